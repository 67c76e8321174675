"""recsite settings, read from the environment (12-factor, via django-environ).

Every variable is optional; the defaults give the embedded set-up: SQLite in
``DATA_DIR`` and django-q2's ORM broker, so nothing but Python is needed.
See docs/operations.md ("Settings") for the full list.
"""

import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
UPLOAD_DIR = DATA_DIR / "uploads"
ARTIFACT_DIR = DATA_DIR / "artifacts"
DEMO_DATA_DIR = DATA_DIR / "demo"


def _persistent_secret_key() -> str:
    """A random key created once and kept in DATA_DIR, so sessions survive restarts."""
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="") or _persistent_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Served behind TLS (directly or by a proxy): secure cookies, HSTS, redirect.
HTTPS = env.bool("HTTPS", default=False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Preloading commits the whole domain to HTTPS in browsers for good; that is the
# site owner's decision, so its deploy-check warning is not raised here.
# W040: the user-history index's INCLUDE columns are a PostgreSQL speed-up (an index-only
# scan); SQLite keeps the same index without them, which is what we want there.
SILENCED_SYSTEM_CHECKS = ["security.W021", "models.W040"]
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "recsite",
    "datasets",
    "models_app",
    "feeds",
    "graphs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Database down: 503 + Retry-After instead of a server error (recsite/db_outage.py).
    "recsite.db_outage.DatabaseOutageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "recsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "datasets.context_processors.projects",
            ],
        },
    },
]

WSGI_APPLICATION = "recsite.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE avoids
    # "database is locked" on lock upgrades; the timeout waits for the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
    # A file, not memory, so a worker subprocess in tests can see the test database.
    DATABASES["default"]["TEST"] = {
        "NAME": str(DATA_DIR / env.str("TEST_DATABASE_NAME", default="test_db.sqlite3"))
    }
else:
    if env.str("TEST_DATABASE_NAME", default=""):  # lets two test runs share a server
        DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME")}
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed log-ins allowed per username / per IP address in the window (recsite/login_throttle.py).
LOGIN_MAX_FAILURES = env.int("LOGIN_MAX_FAILURES", default=10)
LOGIN_MAX_FAILURES_PER_IP = env.int("LOGIN_MAX_FAILURES_PER_IP", default=50)
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", default=15)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the source folders when nobody ran collectstatic.
WHITENOISE_USE_FINDERS = True

# The largest upload (CSV import, user list), in MB; MAX_UPLOAD_BYTES, if set, wins.
MAX_UPLOAD_MB = env.int("MAX_UPLOAD_MB", default=2048)
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=MAX_UPLOAD_MB * 1024**2)
# The first handler refuses an upload over MAX_UPLOAD_BYTES before storing any of it.
FILE_UPLOAD_HANDLERS = [
    "recsite.uploads.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "recsite.uploads.DiskSafeTemporaryFileUploadHandler",
]
FILE_UPLOAD_TEMP_DIR = str(UPLOAD_DIR / "tmp")
(UPLOAD_DIR / "tmp").mkdir(parents=True, exist_ok=True)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["recsite.api_parsers.LimitedJSONParser"],
    # Every API view takes a project's API key (docs/api.md); sessions never reach the API.
    "DEFAULT_AUTHENTICATION_CLASSES": ["datasets.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["datasets.authentication.HasApiKey"],
    # A database outage answers 503 (recsite/db_outage.py); other errors: recsite/api_errors.py.
    "EXCEPTION_HANDLER": "recsite.db_outage.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Per API key, not per IP (datasets/throttling.py); the rate is API_THROTTLE_RATE below.
    "DEFAULT_THROTTLE_CLASSES": ["datasets.throttling.ApiKeyRateThrottle"],
}
# Requests per API key, e.g. "6000/min", "100/s", "50000/hour"; "off" disables the limit.
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="6000/min")
# Serving keeps which version a campaign serves, saved filters and active promotions this many
# seconds per process (docs/serving.md); 0 asks the database on every request.
SERVING_CACHE_SECONDS = env.float("SERVING_CACHE_SECONDS", default=2.0)
# Each web process keeps the newest events of up to this many users, forgotten as soon as
# PostgreSQL announces a change of them (feeds/history_cache.py); 0 turns it off. SQLite: off.
USER_HISTORY_CACHE_USERS = env.int("USER_HISTORY_CACHE_USERS", default=5000)
USER_HISTORY_CACHE_SECONDS = env.float("USER_HISTORY_CACHE_SECONDS", default=300.0)
# Served-log (attribution) rows are buffered per process and written in bulk this often
# (feeds/served_log.py); 0 writes each row inside its request.
SERVED_LOG_FLUSH_SECONDS = env.float("SERVED_LOG_FLUSH_SECONDS", default=0.2)
SPECTACULAR_SETTINGS = {
    "TITLE": "recsite API",
    "DESCRIPTION": "Recommendations, related items, feeds and event ingestion.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No call to validator.swagger.io: the docs page makes no request outside this server.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# django-q2: the ORM broker by default (no server needed), Redis when REDIS_URL is set.
REDIS_URL = env.str("REDIS_URL", default="")
Q_CLUSTER = {
    "name": "recsite",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=6 * 3600),
    "retry": env.int("Q_TIMEOUT", default=6 * 3600) + 600,
    "max_attempts": 1,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 1000,
    "poll": 0.5,
    "label": "Background tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# The API rate limit's counters must be shared by all web workers (a per-process cache would
# give each key WEB_WORKERS times its rate): Redis when REDIS_URL is set, else files in
# DATA_DIR, shared by the workers of one machine (see datasets/throttling.py).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache" / "throttle"),
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        }
    ),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
