"""Rate limits on the login page: too many failed log-ins lock a username and an IP address.

Each failed attempt is counted twice: against the username typed and against the client's IP
address. ``LOGIN_MAX_FAILURES`` failures for one username, or ``LOGIN_MAX_FAILURES_PER_IP``
from one address, within ``LOGIN_LOCKOUT_MINUTES`` minutes lock further attempts for that
username (or from that address) until the oldest of those failures is that many minutes old.
While locked, the password is not even checked, so guessing goes no faster; the page answers
429 and says when to try again. A successful log-in clears the username's failures.

The counters live in the ``throttle`` cache (settings.CACHES), shared by all web workers: Redis
when ``REDIS_URL`` is set, else files in ``DATA_DIR``. Keys hold hashes, never the usernames or
addresses themselves, and include the database name, so several sites (or test runs) sharing
one cache do not lock each other out.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import caches
from django.db import connection

CACHE_ALIAS = "throttle"


@dataclass(frozen=True)
class Lockout:
    """Why and until when log-ins are refused."""

    reason: str  # "username" or "address"
    until: float  # epoch seconds

    @property
    def seconds_left(self) -> int:
        return max(1, math.ceil(self.until - time.time()))

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.seconds_left / 60))
        at = datetime.fromtimestamp(self.until, tz=UTC).strftime("%H:%M")
        who = "this username" if self.reason == "username" else "your network address"
        return (
            f"Too many failed log-ins for {who}: log-ins are paused for "
            f"{minutes} minute{'s' if minutes != 1 else ''} (until {at} UTC). Try again then, "
            "or ask an administrator to reset your password."
        )


def _limits() -> tuple[int, int, int]:
    per_user = int(getattr(settings, "LOGIN_MAX_FAILURES", 10))
    per_ip = int(getattr(settings, "LOGIN_MAX_FAILURES_PER_IP", 50))
    window = int(getattr(settings, "LOGIN_LOCKOUT_MINUTES", 15)) * 60
    return per_user, per_ip, window


def _key(kind: str, value: str) -> str:
    database = str(connection.settings_dict.get("NAME", ""))
    digest = hashlib.sha256(f"{database}\0{value}".encode()).hexdigest()[:32]
    return f"login-failures:{kind}:{digest}"


def client_ip(request) -> str:
    """The client's address; behind a proxy (BEHIND_PROXY), the one the proxy saw."""
    if getattr(settings, "BEHIND_PROXY", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        # The last entry is the one our own proxy appended; earlier ones are client-supplied.
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _keys(username: str, ip: str) -> list[tuple[str, str, int]]:
    per_user, per_ip, _ = _limits()
    keys = [(_key("ip", ip), "address", per_ip)]
    if username:
        keys.insert(0, (_key("user", username.strip()), "username", per_user))
    return keys


def _recent(stamps, now: float, window: int) -> list[float]:
    return sorted(t for t in (stamps or []) if now - t < window)


def lockout(username: str, ip: str) -> Lockout | None:
    """The lockout in force for this username or address, else None."""
    _, _, window = _limits()
    now = time.time()
    cache = caches[CACHE_ALIAS]
    found = cache.get_many([key for key, _, _ in _keys(username, ip)])
    for key, reason, limit in _keys(username, ip):
        recent = _recent(found.get(key), now, window)
        if limit > 0 and len(recent) >= limit:
            # Unlocked when enough of the failures have aged out of the window.
            return Lockout(reason, recent[len(recent) - limit] + window)
    return None


def record_failure(username: str, ip: str) -> None:
    _, _, window = _limits()
    now = time.time()
    cache = caches[CACHE_ALIAS]
    for key, _, limit in _keys(username, ip):
        recent = _recent(cache.get(key), now, window)
        recent.append(now)
        cache.set(key, recent[-max(limit, 1) :], timeout=window + 60)


def clear_failures(username: str) -> None:
    if username:
        caches[CACHE_ALIAS].delete(_key("user", username.strip()))


class LoginView(auth_views.LoginView):
    """Django's login view with the failed-attempt limits above."""

    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        locked = lockout(username, client_ip(request))
        if locked is not None:
            form = self.get_form_class()(request, data=None)
            form.initial = {"username": username[:150]}
            response = self.render_to_response(
                self.get_context_data(form=form, lockout=locked.message)
            )
            response.status_code = 429
            response["Retry-After"] = str(locked.seconds_left)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        username = self.request.POST.get("username", "")
        record_failure(username, client_ip(self.request))
        locked = lockout(username, client_ip(self.request))
        if locked is not None:
            response = self.render_to_response(
                self.get_context_data(form=form, lockout=locked.message)
            )
            response.status_code = 429
            response["Retry-After"] = str(locked.seconds_left)
            return response
        return super().form_invalid(form)

    def form_valid(self, form):
        clear_failures(self.request.POST.get("username", ""))
        return super().form_valid(form)
