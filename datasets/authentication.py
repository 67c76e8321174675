"""How /api/v1/ requests authenticate: a project's API key as ``Authorization: Bearer KEY``.

``request.auth`` is the ApiKey and ``request.auth.project`` the only project the request may
read or write. ``request.user`` stays anonymous: a key is not a recsite login.
"""

import hmac

from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from datasets import selectors, services
from datasets.models import ApiKey


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        scheme, _, presented = get_authorization_header(request).decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return None  # no key at all: HasApiKey answers 401 "not authenticated"
        api_key = matching_api_key(presented.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed(
                "Invalid API key. Copy it again from the project's API keys page; "
                "it is shown only once, when created."
            )
        if not api_key.is_active:
            raise exceptions.AuthenticationFailed(
                f"This API key was revoked on {api_key.revoked_at:%Y-%m-%d %H:%M} UTC; "
                "create a new one on the project's API keys page."
            )
        services.record_api_key_use(api_key=api_key)
        return AnonymousUser(), api_key

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) with a challenge when the key is missing or wrong.
        return 'Bearer realm="recsite API"'


def matching_api_key(presented: str) -> ApiKey | None:
    """The stored key whose hash matches ``presented`` (revoked or not), else None."""
    prefix = services.api_key_prefix(presented)
    if prefix is None:
        return None
    presented_hash = services.hash_api_key(presented)
    for candidate in selectors.api_keys_with_prefix(prefix):
        if hmac.compare_digest(candidate.key_hash, presented_hash):
            return candidate
    return None


class HasApiKey(BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, ApiKey)
