"""API keys as AWS credentials, and the DRF authentication class of /personalize/.

Each recsite API key (``rs_abcd1234_<secret>``) has an AWS-style credential pair, shown with
the key when it is created:

- **access key id** ``RSK`` + the key's stored prefix in capitals (``RSKABCD1234``): the
  server finds the key by it with the same indexed lookup as Bearer keys;
- **secret access key**: base64 of HMAC-SHA256(settings.SECRET_KEY, the key's stored hash).
  Only the server can compute it (a database dump alone does not reveal it), so no
  migration or extra column is needed. Rotating SECRET_KEY changes every secret; keys keep
  working while the old value is listed in SECRET_KEY_FALLBACKS.

``SigV4Authentication`` verifies the request's signature (``sigv4``) against the secret of
each key with that prefix and authenticates as the ``ApiKey``: ``request.auth`` is the key and
``request.auth.project`` the only project the request may touch, as on /api/v1/.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from rest_framework.authentication import BaseAuthentication

from datasets import selectors, services
from datasets.models import ApiKey
from feeds.personalize import sigv4
from feeds.personalize.errors import (
    InvalidInput,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)

ACCESS_KEY_PREFIX = "RSK"
_ACCESS_KEY = re.compile(r"^RSK([A-Z0-9]{8})$")
_SECRET_CONTEXT = b"recsite personalize secret access key\x00"


def access_key_id(api_key: ApiKey | str) -> str:
    """The access key id of ``api_key`` (an ApiKey or its stored prefix ``rs_abcd1234``)."""
    prefix = api_key if isinstance(api_key, str) else api_key.prefix
    return ACCESS_KEY_PREFIX + prefix.removeprefix("rs_").upper()


def prefix_of(access_key: str) -> str | None:
    """The stored API-key prefix an access key id stands for; None if it is not one."""
    match = _ACCESS_KEY.match(access_key or "")
    return f"rs_{match.group(1).lower()}" if match else None


def secret_access_key(key_hash: str, signing_key: str | None = None) -> str:
    """The secret of the API key whose stored hash is ``key_hash``."""
    signing_key = settings.SECRET_KEY if signing_key is None else signing_key
    digest = hmac.new(
        signing_key.encode(), _SECRET_CONTEXT + key_hash.encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode().rstrip("=")


def aws_credentials(api_key: ApiKey) -> tuple[str, str]:
    """``(access key id, secret access key)`` of ``api_key``."""
    return access_key_id(api_key), secret_access_key(api_key.key_hash)


def _secrets(key_hash: str) -> list[str]:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [secret_access_key(key_hash, k) for k in keys]


def authenticate_request(request) -> ApiKey:
    """The ApiKey that signed the Django ``request``; a PersonalizeError otherwise."""
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    if not authorization.strip():
        raise MissingAuthenticationToken(
            "Missing Authentication Token: sign requests with AWS Signature Version 4 (any AWS "
            "SDK does) using the access key id and secret shown with your recsite API key."
        )
    signed = sigv4.parse(authorization, request.META.get("HTTP_X_AMZ_DATE"))
    prefix = prefix_of(signed.access_key)
    candidates = selectors.api_keys_with_prefix(prefix) if prefix else []
    if not candidates:
        raise UnrecognizedClient(
            "The security token included in the request is invalid: no API key has the access "
            f"key id {signed.access_key[:40]!r}. Copy the id and secret shown when the API key "
            "was created (project → API keys)."
        )
    sigv4.check_scope(signed)
    try:
        body = request.body
    except RequestDataTooBig:
        raise InvalidInput("The request body is too large.", status=413) from None
    url = f"{request.scheme}://{request.get_host()}{request.path}"
    if request.META.get("QUERY_STRING"):
        url += "?" + request.META["QUERY_STRING"]
    verifier = sigv4.Verifier(signed, request.method, url, request.headers, body)
    matched = None
    for candidate in candidates:
        # Every candidate and every signing key is tried: no early exit on a match.
        for secret in _secrets(candidate.key_hash):
            if verifier.matches(secret) and matched is None:
                matched = candidate
    if matched is None:
        raise InvalidSignature(
            "The request signature we calculated does not match the signature you provided. "
            "Check your secret access key (shown with the API key when it was created) and "
            "that nothing between the client and recsite rewrites the request."
        )
    if not matched.is_active:
        raise UnrecognizedClient(
            f"The security token included in the request is invalid: this API key was revoked "
            f"on {matched.revoked_at:%Y-%m-%d %H:%M} UTC; create a new one on the project's "
            "API keys page."
        )
    services.record_api_key_use(api_key=matched)
    return matched


class SigV4Authentication(BaseAuthentication):
    """DRF authentication by AWS Signature Version 4 (views of /personalize/)."""

    def authenticate(self, request):
        return AnonymousUser(), authenticate_request(request._request)

    def authenticate_header(self, request):
        return sigv4.ALGORITHM
