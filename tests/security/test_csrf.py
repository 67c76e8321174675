"""CSRF: every POST form carries the token, and every page URL refuses a POST without it."""

import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import PASSWORD

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
FORM = re.compile(r"<form\b[^>]*>", re.IGNORECASE | re.DOTALL)
POST = re.compile(r"""method\s*=\s*["']?post""", re.IGNORECASE)


def post_forms():
    """(template, line, form body) for every ``<form method="post">`` in templates/."""
    for template in sorted(TEMPLATES.rglob("*.html")):
        text = template.read_text(encoding="utf-8")
        for match in FORM.finditer(text):
            if not POST.search(match.group(0)):
                continue
            end = text.find("</form>", match.end())
            assert end != -1, f"{template}: a <form> at offset {match.start()} is never closed"
            line = text.count("\n", 0, match.start()) + 1
            yield template.relative_to(TEMPLATES), line, text[match.end() : end]


def test_every_post_form_in_the_templates_has_a_csrf_token():
    forms = list(post_forms())
    assert len(forms) >= 20, "the template scan found too few forms; is the pattern broken?"
    missing = [f"{name}:{line}" for name, line, body in forms if "{% csrf_token %}" not in body]
    assert not missing, f"POST forms without {{% csrf_token %}}: {', '.join(missing)}"


def test_htmx_requests_send_the_csrf_token_from_the_base_template():
    base = (TEMPLATES / "base.html").read_text(encoding="utf-8")
    assert re.search(r"""hx-headers='\{"X-CSRFToken": "\{\{ csrf_token \}\}"\}'""", base)


def page_routes(resolver=None, prefix=""):
    """Every route of the site's pages (not the key-authenticated /api/v1/ and the
    SigV4-signed /personalize/, which take no cookies) as a URL."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from page_routes(entry, pattern)
        elif isinstance(entry, URLPattern):
            if pattern.startswith(("api/v1/", "personalize/")):
                continue
            yield pattern


def fill(pattern: str, slug: str) -> str | None:
    """A concrete URL for a route, or None for regex routes we cannot fill (admin internals)."""
    if pattern.startswith("^") or "(?P" in pattern:
        return None
    values = {"slug": slug, "int": "1", "str": "items", "path": "x"}

    def value(match):
        converter, _, name = match.group(1).rpartition(":")
        return slug if name == "slug" else values.get(converter or "str", "x")

    return "/" + re.sub(r"<([^>]+)>", value, pattern)


@pytest.mark.django_db
def test_every_page_url_refuses_a_post_without_the_csrf_token(user, project):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    urls = sorted({u for u in (fill(p, project.slug) for p in page_routes()) if u})
    assert len(urls) >= 30, urls
    accepted = []
    for url in urls:
        response = client.post(url, {"name": "x"})
        # Django's middleware refuses pages; DRF's session check refuses the schema/docs views.
        if response.status_code != 403 or (
            not url.startswith("/api/") and b"CSRF" not in response.content
        ):
            accepted.append(f"{url} -> {response.status_code}")
    assert not accepted, "POST without a CSRF token was not refused:\n" + "\n".join(accepted)


@pytest.mark.django_db
def test_the_same_post_with_the_token_gets_through(user, project):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1)
    response = client.post(
        "/login/",
        {"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": token.decode()},
    )
    assert response.status_code == 302 and response["Location"] == "/"
