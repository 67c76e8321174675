"""Per-API-key rate limiting for /api/v1/ (docs/api.md, "Rate limits").

Each API key may make ``API_THROTTLE_RATE`` requests (e.g. ``6000/min``) no matter how many
servers or IP addresses use it; requests without a key (the login-only schema and docs pages)
are not counted. Over the limit the API answers 429 in the usual error format with a
``Retry-After`` header.

The count is a *sliding window counter*: the current fixed window's count plus the previous
window's count weighted by how much of it still overlaps the last ``period`` seconds. Unlike a
plain fixed window it does not allow double bursts at window boundaries, and unlike DRF's
SimpleRateThrottle it does not store (and rewrite on every request) the timestamp of each of
the 6,000 requests a minute the default rate allows.

The counts live in the ``throttle`` cache (settings.CACHES), which must be shared by all web
workers, or each worker counts on its own and a key gets ``workers`` times its rate: Redis when
``REDIS_URL`` is set, else a file-based cache in ``DATA_DIR`` (shared by the workers of one
machine). Touching that cache on every request cost about 0.5 ms with the file cache, a third
of the throughput of ``POST /api/v1/events``, so each process counts locally and adds its
count to the shared one in batches (every ``limit // 100`` requests, every request for limits
under 200, and at least every half second), reading the other processes' counts at the same
time. The limit is therefore exact in one process and may be overrun by up to
``max(1, limit // 100)`` requests per additional worker (about 1% per worker; measured with
gunicorn's 2 workers at 50/min: 51 requests allowed). With the file cache two
processes adding at the same instant can lose one addition; Redis adds atomically.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.cache import caches
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600}
PERIODS.update({"hour": 3600, "d": 86400, "day": 86400})
OFF_WORDS = {"", "0", "off", "none", "unlimited"}


@lru_cache(maxsize=8)
def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"6000/min"`` -> ``(6000, 60)``; None (no limit) for ``""``, ``"off"``, ``"0"``.

    Accepts ``N/s``, ``N/min``, ``N/hour``, ``N/day`` (and the longer or shorter spellings in
    PERIODS), and a number of periods such as ``100/10s``. Raises ValueError for anything else.
    """
    text = (rate or "").strip().lower()
    if text in OFF_WORDS:
        return None
    count, _, period = text.partition("/")
    multiplier, unit = "", period.strip()
    while unit[:1].isdigit():
        multiplier, unit = multiplier + unit[0], unit[1:]
    try:
        limit = int(count)
    except ValueError:
        limit = -1
    if limit < 1 or unit not in PERIODS:
        raise ValueError(
            f"API_THROTTLE_RATE {rate!r} is not a rate; write it as requests/period, e.g. "
            '"6000/min", "100/s" or "50000/hour", or "off" for no limit'
        )
    return limit, PERIODS[unit] * int(multiplier or 1)


def _cache_key(ident: tuple[str, int], window: int) -> str:
    return f"rate:{ident[0]}:{ident[1]}:{window}"


def describe_rate(limit: int, period: int) -> str:
    names = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
    return f"{limit} requests per {names.get(period, f'{period} seconds')}"


# A process adds its requests to the shared count in batches: after every ``limit //
# BATCH_DIVISOR`` requests (every request for small limits) or SYNC_SECONDS, whichever comes
# first, reading the other processes' counts at the same time. See the module doc.
BATCH_DIVISOR = 100
SYNC_SECONDS = 0.5


@dataclass
class _LocalCount:
    """One process's view of a key's count in the current window."""

    window: int
    before: int = 0  # the shared count of the previous window, at the last sync
    so_far: int = 0  # the shared count of this window, at the last sync
    pending: int = 0  # requests of this process not yet added to the shared count
    synced_at: float = -math.inf


class ApiKeyRateThrottle(BaseThrottle):
    """Limits each API key (``request.auth``) to settings.API_THROTTLE_RATE requests."""

    cache_alias = "throttle"
    _lock = threading.Lock()
    _local: dict[tuple[str, int], _LocalCount] = {}

    def allow_request(self, request, view) -> bool:
        key_hash = getattr(request.auth, "key_hash", None)
        if not key_hash:
            return True  # not an API-key request: nothing to count
        rate = parse_rate(getattr(settings, "API_THROTTLE_RATE", ""))
        if rate is None:
            return True
        limit, period = rate
        now = time.time()
        window = int(now // period)
        # The key hash, not the row id: unique even across databases sharing one cache.
        ident = (key_hash[:24], period)
        batch = max(1, limit // BATCH_DIVISOR)
        with self._lock:
            local = self._local.get(ident)
            if local is None or local.window != window:
                if local is not None and local.pending:
                    self._add(_cache_key(ident, local.window), local.pending, period)
                local = self._local[ident] = _LocalCount(window)
            if local.pending >= batch or now - local.synced_at >= SYNC_SECONDS:
                self._sync(local, ident, period, now)
            elapsed = now - window * period
            before, so_far = local.before, local.so_far + local.pending
            if before * (1.0 - elapsed / period) + so_far >= limit:
                wait = self._wait(limit, period, elapsed, before, so_far)
            else:
                local.pending += 1
                return True
        raise Throttled(
            wait=wait,
            detail=(
                f"Too many requests with this API key: the limit is "
                f"{describe_rate(limit, period)} per key. Slow down and retry after the "
                "Retry-After header's seconds; the server's operator can raise "
                "API_THROTTLE_RATE."
            ),
        )

    def _sync(self, local: _LocalCount, ident, period: int, now: float) -> None:
        """Add this process's pending requests to the shared count; read everyone's."""
        current = _cache_key(ident, local.window)
        if local.pending:
            self._add(current, local.pending, period)
            local.pending = 0
        counts = caches[self.cache_alias].get_many([_cache_key(ident, local.window - 1), current])
        local.before = counts.get(_cache_key(ident, local.window - 1), 0)
        local.so_far = counts.get(current, 0)
        local.synced_at = now

    def _add(self, key: str, amount: int, period: int) -> None:
        cache = caches[self.cache_alias]
        try:
            cache.incr(key, amount)
        except ValueError:  # the first requests of this window
            if not cache.add(key, amount, timeout=2 * period + 1):
                cache.incr(key, amount)

    @staticmethod
    def _wait(limit: int, period: int, elapsed: float, before: int, so_far: int) -> int:
        """Seconds until the weighted count drops below ``limit``, at least 1."""
        if so_far < limit and before:
            # Within this window, as the previous window's weight fades.
            seconds = period * (1.0 - (limit - so_far) / before) - elapsed
        else:
            # After this window ends, as this window's count fades in turn.
            seconds = (period - elapsed) + period * max(0.0, 1.0 - limit / max(so_far, 1))
        return max(1, math.ceil(seconds))
