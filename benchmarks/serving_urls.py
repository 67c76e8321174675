"""recsite's URLs plus the serving benchmark's baseline: a DRF view behind the same API-key
authentication, permission and throttle as /api/v1/, returning a fixed 20-item list.

The gap between it and /api/v1/recommendations is what the recommendation pipeline costs
(campaign, history query, scoring, filter, promotion, the attribution INSERT); the rest is
HTTP, WSGI, Django, DRF and the key check, which both pay.
"""

from django.urls import path
from rest_framework.response import Response

from datasets.api import ApiKeyView
from recsite.urls import urlpatterns as recsite_urlpatterns

FIXED_ITEMS = [
    {"item_id": f"i{n:05d}", "score": round(1.0 - n / 100, 6), "source": "model", "reason": "fixed"}
    for n in range(1, 21)
]


class FixedRecommendations(ApiKeyView):
    """Authenticates the key (and throttles) like the real API, then answers a constant."""

    def get(self, request):
        return Response(
            {
                "recommendation_id": "0" * 32,
                "campaign": "baseline",
                "version": 0,
                "items": FIXED_ITEMS,
            }
        )


urlpatterns = [
    path("bench/fixed", FixedRecommendations.as_view(), name="bench-fixed"),
    *recsite_urlpatterns,
]

handler404 = "recsite.api_errors.api_or_page_not_found"
