"""Signed, compact pagination cursors for the feed engine (Django-free).

A cursor records where a feed stands after a page, not which items it showed:

- the absolute position reached (items emitted so far) and the number of slot-pattern turns;
- for each source (in the spec's canonical order) and each promotion, how far its ranked list
  was read, and a 32-bit digest of that read prefix (to notice a list that changed between pages);
- how many pinned items were placed, and which sources were already reported as dry.

The set of items already shown is recomputed from the offsets (every eligible item in a read
prefix was shown, see :mod:`feeds.engine.feed`), so the cursor stays a few dozen bytes however
deep the reader scrolls.

Wire format: ``<payload>.<mac>``, both base64url without padding. The payload is compact JSON;
the MAC is HMAC-SHA256 over the payload and a caller-chosen context (e.g. feed slug and user id),
truncated to 128 bits. A cursor that was altered, signed with another key or issued for another
context raises :class:`InvalidCursor`; one issued for a different (or since edited) feed spec
raises :class:`CursorSpecMismatch`, a subclass, so an API can answer 400 to both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass

CURSOR_VERSION = 1
MAX_CURSOR_LENGTH = 4096
_MAC_BYTES = 16


class InvalidCursor(ValueError):
    """The cursor cannot be used: malformed, altered, foreign, or for another feed."""


class CursorSpecMismatch(InvalidCursor):
    """The cursor is genuine but was issued for a different feed spec (or before an edit)."""


@dataclass
class CursorState:
    """Where a feed stands between two pages. Plain ints only; no item ids."""

    spec_fingerprint: str
    position: int
    turns: int
    pins_done: int
    source_offsets: list[int]
    promotion_offsets: list[int]
    dry_mask: int
    source_digests: list[int]
    promotion_digests: list[int]


def prefix_digest(item_ids: Iterable[object]) -> int:
    """A 32-bit digest of a list prefix (item ids compared by ``str``)."""
    h = hashlib.blake2b(digest_size=4)
    for item_id in item_ids:
        h.update(str(item_id).encode())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "big")


def check_secret_key(secret_key: bytes | str) -> bytes:
    if isinstance(secret_key, str):
        secret_key = secret_key.encode()
    if not isinstance(secret_key, bytes) or not secret_key:
        raise ValueError(
            "build_page needs a non-empty secret_key (bytes or str) to sign cursors; "
            "pass the site's SECRET_KEY or a key derived from it."
        )
    return secret_key


def _mac(key: bytes, payload: bytes, context: str) -> bytes:
    message = context.encode() + b"\x00" + payload
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def encode_cursor(state: CursorState, *, secret_key: bytes | str, context: str = "") -> str:
    """Serialise and sign ``state`` as a URL-safe string."""
    key = check_secret_key(secret_key)
    body = [
        CURSOR_VERSION,
        state.spec_fingerprint,
        state.position,
        state.turns,
        state.pins_done,
        state.source_offsets,
        state.promotion_offsets,
        state.dry_mask,
        state.source_digests,
        state.promotion_digests,
    ]
    payload = json.dumps(body, separators=(",", ":")).encode()
    return f"{_b64encode(payload)}.{_b64encode(_mac(key, payload, context))}"


def _bad(detail: str) -> InvalidCursor:
    return InvalidCursor(
        f"invalid cursor: {detail}. Use the next_cursor of the previous page unchanged, "
        "or start again from the first page without a cursor."
    )


def decode_cursor(
    cursor: str,
    *,
    secret_key: bytes | str,
    context: str = "",
    spec_fingerprint: str,
    n_sources: int,
    n_promotions: int,
) -> CursorState:
    """Verify and parse a cursor made by :func:`encode_cursor` for the same spec and context."""
    key = check_secret_key(secret_key)
    if not isinstance(cursor, str) or not cursor:
        raise _bad("it is empty or not a string")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise _bad(f"it is {len(cursor)} characters long, more than any cursor this feed issues")
    parts = cursor.split(".")
    if len(parts) != 2:
        raise _bad("it is not in the form <payload>.<signature>")
    try:
        payload = _b64decode(parts[0])
        mac = _b64decode(parts[1])
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _bad("it is not valid base64url") from None
    if not hmac.compare_digest(mac, _mac(key, payload, context)):
        raise _bad(
            "its signature does not match (it was altered, or issued by another server "
            "or for another feed or user)"
        )
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad("its payload is not readable") from None
    if not isinstance(body, list) or len(body) != 10 or body[0] != CURSOR_VERSION:
        raise _bad("it was issued by an incompatible version of the feed engine")
    (
        _,
        fingerprint,
        position,
        turns,
        pins_done,
        offsets,
        promo_offsets,
        dry_mask,
        digests,
        promo_digests,
    ) = body
    if fingerprint != spec_fingerprint:
        raise CursorSpecMismatch(
            "invalid cursor: it was issued for a different feed, or this feed's slots, fallback, "
            "promotions or pinned items were edited since. Start again from the first page "
            "without a cursor."
        )

    def ints(value: object, length: int, what: str) -> list[int]:
        if (
            not isinstance(value, list)
            or len(value) != length
            or not all(type(v) is int and v >= 0 for v in value)
        ):
            raise _bad(f"its {what} are malformed")
        return value

    for name, value in (
        ("position", position),
        ("turns", turns),
        ("pins", pins_done),
        ("dry mask", dry_mask),
    ):
        if type(value) is not int or value < 0:
            raise _bad(f"its {name} is malformed")
    return CursorState(
        spec_fingerprint=fingerprint,
        position=position,
        turns=turns,
        pins_done=pins_done,
        source_offsets=ints(offsets, n_sources, "source offsets"),
        promotion_offsets=ints(promo_offsets, n_promotions, "promotion offsets"),
        dry_mask=dry_mask,
        source_digests=ints(digests, n_sources, "source digests"),
        promotion_digests=ints(promo_digests, n_promotions, "promotion digests"),
    )
