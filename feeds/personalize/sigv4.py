"""Verifying AWS Signature Version 4 on incoming requests, with botocore doing the crypto.

The SDK signs a request (``Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<yyyymmdd>/
<region>/<service>/aws4_request, SignedHeaders=host;x-amz-date;..., Signature=<hex>``). The
server rebuilds the same ``botocore.awsrequest.AWSRequest`` from the method, URL, the headers
named in ``SignedHeaders`` and the body, lets ``botocore.auth.SigV4Auth`` compute the
canonical request, string to sign and signature with the caller's secret, and compares the
result with ``hmac.compare_digest``. Nothing about the signature algorithm is written here.

Rules (AWS's, with its error codes):
- the algorithm is AWS4-HMAC-SHA256 and the header has Credential, SignedHeaders and
  Signature (else ``IncompleteSignatureException``);
- the credential scope's service is ``personalize`` (the ``signingName`` of both
  personalize-runtime and personalize-events), its date is the date of ``X-Amz-Date``, and
  its region is any non-empty text (the SDK's ``region_name``);
- ``host`` and ``x-amz-date`` are signed; ``X-Amz-Date`` is within MAX_SKEW of the server's
  clock (else ``InvalidSignatureException``, "Signature expired" as AWS says);
- a signed ``x-amz-content-sha256`` must be the SHA-256 of the body actually received.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from feeds.personalize.errors import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "personalize"  # signingName in botocore/data/personalize-{runtime,events}/*/service-2
MAX_SKEW = timedelta(minutes=5)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class SignedRequest:
    """What the ``Authorization`` and ``X-Amz-Date`` headers claim."""

    access_key: str
    scope_date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    timestamp: datetime


def parse(authorization: str, amz_date: str | None) -> SignedRequest:
    """The parts of a SigV4 ``Authorization`` header; IncompleteSignature if it is malformed."""
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise MissingAuthenticationToken(
            f"Missing Authentication Token: an Authorization header of type {algorithm[:20]!r} "
            f"was sent; /personalize/ takes requests signed with AWS Signature Version 4 "
            f"({ALGORITHM}) by an AWS SDK (recsite API keys as Bearer tokens work on /api/v1/)."
        )
    parts = {}
    for piece in rest.split(","):
        name, sep, value = piece.strip().partition("=")
        if sep:
            parts[name.strip()] = value.strip()
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if not parts.get(p)]
    if missing:
        raise IncompleteSignature(
            f"Authorization header requires '{missing[0]}' parameter. Authorization="
            f"{authorization[:200]}"
        )
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise IncompleteSignature(
            "Credential must have the form <access key id>/<date>/<region>/<service>/"
            f"aws4_request; got '{parts['Credential'][:200]}'."
        )
    if not amz_date:
        raise IncompleteSignature(
            "Authorization header requires existence of the 'X-Amz-Date' header."
        )
    try:
        timestamp = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise IncompleteSignature(
            f"X-Amz-Date must look like 20250101T120000Z; got '{amz_date[:40]}'."
        ) from None
    signed = tuple(h.strip().lower() for h in parts["SignedHeaders"].split(";") if h.strip())
    return SignedRequest(
        access_key=scope[0],
        scope_date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=signed,
        signature=parts["Signature"].lower(),
        amz_date=amz_date,
        timestamp=timestamp,
    )


def check_scope(signed: SignedRequest, now: datetime | None = None) -> None:
    """The credential scope and the clock; InvalidSignature otherwise."""
    if signed.service != SERVICE:
        raise InvalidSignature(
            f"Credential should be scoped to correct service: '{SERVICE}'; got "
            f"'{signed.service[:40]}'."
        )
    if signed.scope_date != signed.amz_date[:8]:
        raise InvalidSignature(
            f"Credential should be scoped to a valid date: '{signed.amz_date[:8]}'; got "
            f"'{signed.scope_date[:20]}'."
        )
    for header in ("host", "x-amz-date"):
        if header not in signed.signed_headers:
            raise InvalidSignature(f"'{header}' must be a signed header (SignedHeaders).")
    now = now or datetime.now(UTC)
    if signed.timestamp < now - MAX_SKEW:
        raise InvalidSignature(
            f"Signature expired: {signed.amz_date} is now earlier than "
            f"{(now - MAX_SKEW).strftime(AMZ_DATE_FORMAT)} ({now.strftime(AMZ_DATE_FORMAT)} - "
            "5 min.). Check the client's clock."
        )
    if signed.timestamp > now + MAX_SKEW:
        raise InvalidSignature(
            f"Signature not yet current: {signed.amz_date} is still later than "
            f"{(now + MAX_SKEW).strftime(AMZ_DATE_FORMAT)} ({now.strftime(AMZ_DATE_FORMAT)} + "
            "5 min.). Check the client's clock."
        )


class Verifier:
    """The canonical request of one received request, ready to check candidate secrets."""

    def __init__(self, signed: SignedRequest, method: str, url: str, headers, body: bytes):
        """``headers``: a case-insensitive mapping of the received headers; ``url``: the
        scheme, host, path (as received) and raw query string."""
        self.signed = signed
        values = {}
        for name in signed.signed_headers:
            value = headers.get(name)
            if value is None:
                raise InvalidSignature(
                    f"The header '{name}' is listed in SignedHeaders but was not received."
                )
            values[name] = value
        body = body or b""
        declared = values.get("x-amz-content-sha256")
        if declared is not None and declared != hashlib.sha256(body).hexdigest():
            raise InvalidSignature(
                "x-amz-content-sha256 is not the SHA-256 of the body received; sign the "
                "payload (unsigned payloads are not accepted)."
            )
        request = AWSRequest(method=method.upper(), url=url, headers=values, data=body)
        request.context["timestamp"] = signed.amz_date
        self._request = request
        self._signer = SigV4Auth(Credentials(signed.access_key, "-"), SERVICE, signed.region)
        headers_to_sign = self._signer.headers_to_sign(request)
        if self._signer.signed_headers(headers_to_sign) != ";".join(sorted(signed.signed_headers)):
            raise InvalidSignature(
                "SignedHeaders lists headers that cannot be signed (such as user-agent or "
                "expect); sign the request with an AWS SDK."
            )
        canonical = self._signer.canonical_request(request)
        self._string_to_sign = self._signer.string_to_sign(request, canonical)

    def signature_for(self, secret: str) -> str:
        signer = SigV4Auth(Credentials(self.signed.access_key, secret), SERVICE, self.signed.region)
        return signer.signature(self._string_to_sign, self._request)

    def matches(self, secret: str) -> bool:
        """Whether ``secret`` produces the received signature (constant-time comparison)."""
        return hmac.compare_digest(self.signature_for(secret), self.signed.signature)
