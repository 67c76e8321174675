"""One error format for the whole API.

Every error response is ``{"error": {"code": "...", "message": "...", "fields": {...}}}``;
``fields`` (field -> messages) appears for validation errors, ``rejected`` (records with
their index and errors) when a batch had no valid record at all.
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.urls import Resolver404, resolve
from django.views.defaults import page_not_found
from rest_framework import exceptions
from rest_framework.views import exception_handler, set_rollback

logger = logging.getLogger("django.request")

_CODES = {
    exceptions.ParseError: "malformed_json",
    exceptions.AuthenticationFailed: "not_authenticated",
}
_MESSAGES = {
    exceptions.NotAuthenticated: (
        "Send your project's API key as “Authorization: Bearer <key>”. "
        "Keys are created on the project's API keys page."
    ),
}


class InvalidRecords(exceptions.APIException):
    """No record of a batch was valid; ``rejected`` says which field of which record is wrong."""

    status_code = 400
    default_code = "invalid_records"

    def __init__(self, message: str, rejected: list[dict]):
        super().__init__(message)
        self.rejected = rejected


def api_exception_handler(exc, context):
    """DRF's handler (status, headers, rollback) with the body rewritten to our format."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        return None if settings.DEBUG else _server_error(exc, context)
    response.data = {"error": _error_body(exc)}
    return response


def _error_body(exc: exceptions.APIException) -> dict:
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), exc.default_code)
    body = {"code": code, "message": _MESSAGES.get(type(exc)) or str(exc.detail)}
    if isinstance(exc, exceptions.ValidationError):
        fields = _plain(
            exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        )
        body["fields"] = fields
        body["message"] = _first_problem(fields)
    if isinstance(exc, InvalidRecords):
        body["rejected"] = exc.rejected
    return body


def _plain(detail):
    """ErrorDetail trees as plain dicts, lists and strings."""
    if isinstance(detail, dict):
        return {str(key): _plain(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_plain(value) for value in detail]
    return str(detail)


def _first_problem(fields: dict) -> str:
    field, problems = next(iter(fields.items()))
    while isinstance(problems, dict | list) and problems:
        problems = next(iter(problems.values())) if isinstance(problems, dict) else problems[0]
    return f"{field}: {problems}" if field != "non_field_errors" else str(problems)


def _server_error(exc, context):
    request = context["request"]
    logger.error("Internal Server Error: %s", request.path, exc_info=exc)
    set_rollback()
    return JsonResponse(
        {
            "error": {
                "code": "server_error",
                "message": "Something went wrong on the server. Retry later; if it "
                "persists, tell the site's operator (the server log has the details).",
            }
        },
        status=500,
    )


def api_or_page_not_found(request, exception):
    """handler404: JSON for unknown /api/ URLs, the normal page everywhere else."""
    if request.path.startswith("/api/"):
        message = f"No API endpoint at {request.path}. See docs/api.md for the endpoints."
        if request.path.endswith("/") and _resolves(request.path.rstrip("/")):
            message = f"No API endpoint at {request.path}; did you mean {request.path.rstrip('/')}?"
        return JsonResponse({"error": {"code": "not_found", "message": message}}, status=404)
    return page_not_found(request, exception)


def _resolves(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True
