"""Errors in the shape the AWS SDKs parse for rest-json services such as Personalize.

The body is ``{"__type": "ResourceNotFoundException", "message": "..."}`` and the
``x-amzn-ErrorType`` header repeats the code: botocore's ``RestJSONParser`` reads the code
from that header (else ``__type``/``code`` in the body) and the message from ``message``, so
boto3 raises ``client.exceptions.ResourceNotFoundException`` (a ``ClientError``) with
``e.response["Error"]["Code"]`` and ``["Message"]`` set, and its retry logic sees throttling
(``ThrottlingException``) and server errors (5xx) as retryable and everything else not.

The classes subclass DRF's ``APIException`` so that the SigV4 authentication class can raise
them; ``PersonalizeView.handle_exception`` (runtime.py) turns every exception, ours or
DRF's or serving's, into this shape with ``aws_error_response``.
"""

from __future__ import annotations

import logging
import uuid

from django.http import Http404, JsonResponse
from rest_framework import exceptions

logger = logging.getLogger("django.request")


class PersonalizeError(exceptions.APIException):
    """An error answered as ``{"__type": code, "message": message}`` with ``status``."""

    status_code = 400
    code = "InvalidInputException"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status_code = status


class InvalidInput(PersonalizeError):
    """A parameter is missing, malformed or out of range (HTTP 400)."""

    status_code = 400
    code = "InvalidInputException"


class ResourceNotFound(PersonalizeError):
    """The ARN names nothing in the caller's project (HTTP 404)."""

    status_code = 404
    code = "ResourceNotFoundException"


class ResourceInUse(PersonalizeError):
    status_code = 400
    code = "ResourceInUseException"


class MissingAuthenticationToken(PersonalizeError):
    """No SigV4 ``Authorization`` header at all (HTTP 403, as AWS answers)."""

    status_code = 403
    code = "MissingAuthenticationTokenException"


class IncompleteSignature(PersonalizeError):
    """An ``Authorization`` header that is not a complete SigV4 header (HTTP 400)."""

    status_code = 400
    code = "IncompleteSignatureException"


class UnrecognizedClient(PersonalizeError):
    """The access key id is unknown or its API key was revoked (HTTP 403)."""

    status_code = 403
    code = "UnrecognizedClientException"


class InvalidSignature(PersonalizeError):
    """The signature does not match, or is expired, or is scoped wrongly (HTTP 403)."""

    status_code = 403
    code = "InvalidSignatureException"


class AccessDenied(PersonalizeError):
    status_code = 403
    code = "AccessDeniedException"


class Throttling(PersonalizeError):
    """Too many requests for this API key (HTTP 429; boto3 retries it with backoff)."""

    status_code = 429
    code = "ThrottlingException"


class ServiceUnavailable(PersonalizeError):
    status_code = 503
    code = "ServiceUnavailableException"


def aws_error_response(exc: PersonalizeError, headers: dict | None = None) -> JsonResponse:
    """The JSON error response for ``exc`` (with a request id, as AWS sends one)."""
    response = JsonResponse(
        {"__type": exc.code, "message": exc.message},
        status=exc.status_code,
        content_type="application/json",
    )
    response["x-amzn-ErrorType"] = exc.code
    response["x-amzn-RequestId"] = str(uuid.uuid4())
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def as_personalize_error(exc: Exception) -> PersonalizeError | None:
    """``exc`` as a PersonalizeError; None for unexpected exceptions (a server error)."""
    from feeds.recommending import ServingError

    if isinstance(exc, PersonalizeError):
        return exc
    if isinstance(exc, ServingError):
        if exc.status == 404:
            return ResourceNotFound(exc.message)
        if exc.status == 409:  # NotDeployed: the campaign serves no model version yet
            return ResourceNotFound(exc.message)
        if exc.status >= 500:
            return ServiceUnavailable(exc.message)
        return InvalidInput(exc.message)
    if isinstance(exc, Http404):
        return ResourceNotFound(str(exc) or "Not found.")
    if isinstance(exc, exceptions.NotAuthenticated):
        return MissingAuthenticationToken(
            "Missing Authentication Token: sign requests with AWS Signature Version 4 using "
            "the access key id and secret shown with your recsite API key."
        )
    if isinstance(exc, exceptions.AuthenticationFailed):
        return UnrecognizedClient(str(exc.detail))
    if isinstance(exc, exceptions.Throttled):
        wait = f" Retry in {int(exc.wait) + 1} s." if exc.wait is not None else ""
        return Throttling(f"Rate exceeded for this API key.{wait}")
    if isinstance(exc, exceptions.MethodNotAllowed):
        return PersonalizeError(str(exc.detail), code="UnknownOperationException", status=405)
    if isinstance(exc, exceptions.ParseError | exceptions.UnsupportedMediaType):
        return PersonalizeError(str(exc.detail), code="SerializationException", status=400)
    if isinstance(exc, exceptions.PermissionDenied):
        return AccessDenied(str(exc.detail))
    if isinstance(exc, exceptions.APIException):
        return PersonalizeError(str(exc.detail), code="InvalidInputException", status=400)
    return None


def internal_error() -> JsonResponse:
    return aws_error_response(
        PersonalizeError(
            "Something went wrong on the server; retry later. If it persists, tell the "
            "site's operator (the server log has the details).",
            code="InternalFailure",
            status=500,
        )
    )
