"""Signature Version 4 verification (feeds/personalize/sigv4.py) against requests that
botocore itself signs, and the access key id / secret pair of an API key."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from feeds.personalize import auth, sigv4
from feeds.personalize.errors import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
)

URL = "http://127.0.0.1:8000/personalize/recommendations"
BODY = json.dumps({"campaignArn": "arn:aws:personalize:local:shop:campaign/default"}).encode()
KEY_ID, SECRET = "RSKABCD1234", "s3cr3t/Value+With=Signs"


class Headers(dict):
    """Received headers: names compared without case, as Django's ``request.headers``."""

    def __init__(self, pairs):
        super().__init__((k.lower(), v) for k, v in pairs)

    def __getitem__(self, name):
        return super().__getitem__(name.lower())

    def __setitem__(self, name, value):
        super().__setitem__(name.lower(), value)

    def __delitem__(self, name):
        super().__delitem__(name.lower())

    def get(self, name, default=None):
        return super().get(name.lower(), default)


def signed(secret=SECRET, *, body=BODY, region="local", service="personalize", when=None):
    """A request signed by botocore: (method, url, headers, body)."""
    request = AWSRequest(
        method="POST", url=URL, data=body, headers={"Content-Type": "application/json"}
    )
    signer = SigV4Auth(Credentials(KEY_ID, secret), service, region)
    if when is None:
        signer.add_auth(request)
    else:
        import botocore.auth as botocore_auth

        original = botocore_auth.get_current_datetime
        botocore_auth.get_current_datetime = lambda: when.replace(tzinfo=None)
        try:
            signer.add_auth(request)
        finally:
            botocore_auth.get_current_datetime = original
    headers = Headers(request.headers.items())
    headers["Host"] = "127.0.0.1:8000"
    return "POST", URL, headers, body


def verify(method, url, headers, body, secret=SECRET, now=None):
    parsed = sigv4.parse(headers["Authorization"], headers.get("X-Amz-Date"))
    sigv4.check_scope(parsed, now)
    return sigv4.Verifier(parsed, method, url, headers, body).matches(secret)


def test_a_request_botocore_signed_verifies_with_the_same_secret_only():
    request = signed()
    assert verify(*request)
    assert not verify(*request, secret=SECRET + "x")


def test_a_changed_body_or_path_breaks_the_signature():
    method, url, headers, body = signed()
    assert not verify(method, url, headers, body.replace(b"default", b"premium"))
    assert not verify(method, url.replace("recommendations", "personalize-ranking"), headers, body)
    assert not verify("PUT", url, headers, body)


def test_a_changed_signed_header_breaks_the_signature():
    method, url, headers, body = signed()
    headers["Content-Type"] = "text/plain"
    assert not verify(method, url, headers, body)


def test_a_signed_header_that_was_not_received_is_refused():
    method, url, headers, body = signed()
    del headers["Content-Type"]
    with pytest.raises(InvalidSignature, match="content-type"):
        verify(method, url, headers, body)


def test_a_declared_payload_hash_must_be_the_body_s():
    request = AWSRequest(
        method="POST", url=URL, data=BODY, headers={"X-Amz-Content-SHA256": "0" * 64}
    )
    SigV4Auth(Credentials(KEY_ID, SECRET), "personalize", "local").add_auth(request)
    headers = Headers(request.headers.items())
    headers["Host"] = "127.0.0.1:8000"
    with pytest.raises(InvalidSignature, match="SHA-256"):
        verify("POST", URL, headers, BODY)


@pytest.mark.parametrize(
    ("minutes", "words"), [(-6, "Signature expired"), (6, "Signature not yet current")]
)
def test_timestamps_more_than_5_minutes_off_are_refused(minutes, words):
    request = signed(when=datetime.now(UTC) + timedelta(minutes=minutes))
    with pytest.raises(InvalidSignature, match=words):
        verify(*request)


def test_timestamps_within_5_minutes_are_accepted():
    assert verify(*signed(when=datetime.now(UTC) - timedelta(minutes=4, seconds=30)))
    assert verify(*signed(when=datetime.now(UTC) + timedelta(minutes=4, seconds=30)))


def test_any_region_but_only_the_personalize_service():
    assert verify(*signed(region="eu-west-1"))
    with pytest.raises(InvalidSignature, match="service"):
        verify(*signed(service="s3"))


def test_the_signing_name_is_the_one_in_botocore_s_service_models():
    data = Path(botocore.__file__).parent / "data"
    for service in ("personalize-runtime", "personalize-events"):
        for model in (data / service).glob("*/service-2.json*"):
            raw = model.read_bytes()
            text = gzip.decompress(raw) if model.suffix == ".gz" else raw
            assert json.loads(text)["metadata"]["signingName"] == sigv4.SERVICE


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        ("Bearer rs_abcd1234_xyz", MissingAuthenticationToken),
        ("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=ab", IncompleteSignature),
        ("AWS4-HMAC-SHA256 Credential=K/2026/local, SignedHeaders=host, Signature=ab", None),
    ],
)
def test_malformed_authorization_headers(authorization, error):
    with pytest.raises(error or IncompleteSignature):
        sigv4.parse(authorization, "20260101T000000Z")


def test_a_date_header_is_required():
    _, _, headers, _ = signed()
    with pytest.raises(IncompleteSignature, match="X-Amz-Date"):
        sigv4.parse(headers["Authorization"], None)


def test_the_credential_date_must_be_the_request_s():
    _, _, headers, _ = signed()
    parsed = sigv4.parse(headers["Authorization"], headers["X-Amz-Date"])
    other_day = sigv4.parse(
        headers["Authorization"].replace(f"/{parsed.scope_date}/", "/20200101/"),
        headers["X-Amz-Date"],
    )
    with pytest.raises(InvalidSignature, match="valid date"):
        sigv4.check_scope(other_day)


def test_access_key_ids_stand_for_stored_prefixes():
    assert auth.access_key_id("rs_ab12cd34") == "RSKAB12CD34"
    assert auth.prefix_of("RSKAB12CD34") == "rs_ab12cd34"
    for bad in ("", "AKIAIOSFODNN7EXAMPLE", "RSKAB12CD3", "RSKab12cd34", "RSKAB12CD34X"):
        assert auth.prefix_of(bad) is None


def test_secrets_depend_on_the_key_and_on_secret_key(settings):
    first = auth.secret_access_key("a" * 64)
    assert first == auth.secret_access_key("a" * 64)
    assert first != auth.secret_access_key("b" * 64)
    assert len(first) >= 40
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40
    assert auth.secret_access_key("a" * 64) != first
