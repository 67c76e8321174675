"""The database is down or unreachable: answer 503 with Retry-After instead of a server error.

When PostgreSQL restarts, fails over or is unreachable (or SQLite cannot open its file), the
database driver raises ``OperationalError`` ("connection refused", "terminating connection
due to administrator command", "the database system is starting up") or ``InterfaceError``
("connection already closed"). Without this module those become 500 "server error" answers,
which tell an app to give up and an operator that recsite has a bug. Here they become:

- API (``/api/...``, or a request that sends or accepts only JSON): **503**
  ``{"error": {"code": "database_unavailable", "message": ...}}`` with ``Retry-After``; a write
  batch is stored in one transaction, so it was stored entirely or (nearly always) not at all,
  and the app retries it later;
- pages: a **503** page saying the database is unavailable, with ``Retry-After``.

Three entry points catch the error wherever it is raised:

- ``api_exception_handler`` (DRF's ``EXCEPTION_HANDLER``): errors inside API views, their
  authentication (the API key lookup) and throttling; other errors go on to
  ``recsite.api_errors``;
- ``DatabaseOutageMiddleware.process_exception``: errors inside page views;
- ``DatabaseOutageMiddleware.__call__`` with the ``got_request_exception`` signal: errors in
  other middleware (loading the session or the logged-in user), which Django has already
  turned into a 500 by the time the response comes back; that 500 is replaced by the 503.

Nothing here touches the database. Recovery needs no restart: after a failed request Django
closes the connection (it is unusable), and with ``CONN_HEALTH_CHECKS`` a persistent
connection (``CONN_MAX_AGE``) that died while idle is checked and replaced before it is used
(proved by tests/drills/test_database_restart.py).
"""

from __future__ import annotations

import html
import logging
import sys
import time

from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from rest_framework.views import set_rollback

from recsite import api_errors

logger = logging.getLogger("recsite.db_outage")

RETRY_AFTER_SECONDS = 5
API_MESSAGE = (
    "The database is unavailable right now (it may be restarting). Retry in a few seconds; "
    "a write batch is stored in one transaction, so it was stored entirely or not at all."
)
PAGE_TITLE = "The database is unavailable"
PAGE_TEXT = (
    "recsite cannot reach its database right now; it may be restarting. Reload this page in "
    "a few seconds; if you were sending a form, check afterwards that it was saved. If it "
    "lasts, tell the site's operator (/healthz shows the database's state)."
)
# One warning per process every few seconds: an outage under load is thousands of requests.
_LOG_EVERY_SECONDS = 10.0
_last_logged = 0.0


def database_error(exc: BaseException | None) -> BaseException | None:
    """The connection error behind ``exc`` (itself or what caused it), else None."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OperationalError | InterfaceError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _log(request, exc: BaseException) -> None:
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= _LOG_EVERY_SECONDS:
        _last_logged = now
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.warning(
            "Database unavailable, answering 503 (%s %s): %s: %s",
            request.method,
            request.path,
            type(exc).__name__,
            first_line[:300],
        )


def api_response() -> JsonResponse:
    response = JsonResponse(
        {"error": {"code": "database_unavailable", "message": API_MESSAGE}}, status=503
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def page_response() -> HttpResponse:
    # Plain HTML, no template: the site's base template reads the database (the project menu).
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(PAGE_TITLE)} · recsite</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;"
        "padding:0 1rem;color:#222}h1{font-size:1.5rem}</style></head><body>"
        f"<h1>{html.escape(PAGE_TITLE)}</h1><p>{html.escape(PAGE_TEXT)}</p>"
        f"<p>Status 503; retry after {RETRY_AFTER_SECONDS} seconds.</p></body></html>"
    )
    response = HttpResponse(body, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def wants_json(request) -> bool:
    """API paths, and programs that send or ask for JSON (e.g. other API-style endpoints)."""
    accept = request.headers.get("Accept", "")
    return (
        request.path.startswith("/api/")
        or request.content_type == "application/json"
        or ("json" in accept and "text/html" not in accept)
    )


def outage_response(request) -> HttpResponse:
    return api_response() if wants_json(request) else page_response()


def api_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: 503 for a database outage, recsite.api_errors otherwise."""
    error = database_error(exc)
    if error is None:
        return api_errors.api_exception_handler(exc, context)
    _log(context["request"], error)
    set_rollback()  # only flags open atomic blocks; sends nothing to the database
    return api_response()


def _remember_outage(sender, request=None, **kwargs):
    """got_request_exception: note a database outage so the middleware can answer 503."""
    error = database_error(sys.exc_info()[1])
    if request is not None and error is not None:
        request._database_outage = error


class DatabaseOutageMiddleware:
    """Put it near the top of MIDDLEWARE (before the session and authentication)."""

    def __init__(self, get_response):
        self.get_response = get_response
        got_request_exception.connect(_remember_outage, dispatch_uid="recsite.db_outage")

    def __call__(self, request):
        response = self.get_response(request)
        error = getattr(request, "_database_outage", None)
        if error is not None and response.status_code == 500:
            _log(request, error)
            return outage_response(request)
        return response

    def process_exception(self, request, exception):
        error = database_error(exception)
        if error is None:
            return None
        _log(request, error)
        return outage_response(request)
