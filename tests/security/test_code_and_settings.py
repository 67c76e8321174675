"""Source-tree and settings checks: no code execution on user data, a clean deploy check."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from datasets import authentication, services
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ["datasets", "models_app", "feeds", "graphs", "recsite", "benchmarks"]
# Calls that run code or unpickle objects: never on anything a user can send or upload.
FORBIDDEN = re.compile(
    r"(?<![\w.])eval\(|(?<![\w.])exec\(|\.eval\(|pickle\.loads?\("
    r"|allow_pickle\s*=\s*True|(?<![\w.])compile\("
    r"|yaml\.load\(|yaml\.unsafe_load|marshal\.loads?\(|shelve\.open\(|pd\.read_pickle\("
    r"|pandas\.read_pickle\(|joblib\.load\(|torch\.load\(|dill\.loads?\("
)


def python_sources():
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path
    yield ROOT / "manage.py"


def test_no_eval_exec_or_unpickling_anywhere_outside_the_tests():
    sources = list(python_sources())
    assert len(sources) > 50
    found = []
    for path in sources:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if FORBIDDEN.search(code):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "code execution / unpickling found:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "value = eval(expression)",
        "exec(code, {})",
        "data = pickle.loads(blob)",
        "np.load(path, allow_pickle=True)",
        "yaml.load(text)",
        "pd.read_pickle(path)",
        "pd.eval(expression)",
        "code = compile(source, 'x', 'eval')",
    ],
)
def test_the_pattern_catches_what_it_is_meant_to(line):
    assert FORBIDDEN.search(line)


@pytest.mark.parametrize(
    "line",
    [
        "model.evaluate(x)",
        "np.load(p, allow_pickle=False)",
        "ast.literal_eval(text)",
        "re.compile(pattern)",
    ],
)
def test_the_pattern_does_not_flag_harmless_names(line):
    assert not FORBIDDEN.search(line)


def production_env(**extra):
    # DJANGO_ALLOW_ASYNC_UNSAFE: set by the browser tests' conftest, never in production.
    dropped = ("DEBUG", "HTTPS", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(
        DEBUG="False",
        HTTPS="true",
        SECRET_KEY="deploy-check-" + "k" * 60,
        ALLOWED_HOSTS="recsite.example.com",
        **extra,
    )
    return env


def test_the_deploy_check_is_clean_under_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_make_cookies_secure_and_headers_strict():
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_HTTPONLY, "
        "s.X_FRAME_OPTIONS, s.SECURE_CONTENT_TYPE_NOSNIFF]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=production_env(DJANGO_SETTINGS_MODULE="recsite.settings"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == '[false, true, true, true, 31536000, true, "DENY", true]'


@pytest.mark.django_db
def test_pages_send_the_security_headers(logged_in_client):
    response = logged_in_client.get("/")
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def all_stored_text() -> str:
    """Every value of every row of every table, as one string."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


@pytest.mark.django_db
def test_the_database_never_holds_a_raw_api_key(user, project):
    client = Client()
    client.force_login(user)
    response = client.post(f"/p/{project.slug}/api-keys/", {"name": "mobile app"})
    assert response.status_code == 200
    plaintext = re.search(rb"rs_[a-z0-9]{8}_[A-Za-z0-9_-]{32,}", response.content).group(0).decode()
    secret = plaintext.split("_", 2)[2]
    # The key works ...
    api = Client().post(
        "/api/v1/users",
        {"users": [{"user_id": "u1"}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {plaintext}",
    )
    assert api.status_code == 200, api.content
    # ... yet no table, column or log row holds it or its secret part, only the SHA-256.
    stored = all_stored_text()
    assert plaintext not in stored and secret not in stored and secret[:16] not in stored
    assert services.hash_api_key(plaintext) in stored
    assert PASSWORD not in stored  # nor a password, for that matter


def test_api_keys_are_compared_in_constant_time():
    import inspect

    source = inspect.getsource(authentication.matching_api_key)
    assert "hmac.compare_digest" in source
    for path in python_sources():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"key_hash\s*[!=]=|[!=]=\s*\w*key_hash", text), path
