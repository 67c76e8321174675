"""Routes of the Personalize-compatible API: an SDK's ``endpoint_url`` is ``<site>/personalize``.

The paths are the ``requestUri`` of each operation in botocore's service models.
"""

from django.urls import path

from feeds.personalize import events, runtime

urlpatterns = [
    # personalize-runtime
    path(
        "recommendations",
        runtime.GetRecommendationsView.as_view(),
        name="personalize-recommendations",
    ),
    path(
        "personalize-ranking",
        runtime.GetPersonalizedRankingView.as_view(),
        name="personalize-ranking",
    ),
    # personalize-events (events.py)
    path("events", events.PutEventsView.as_view(), name="personalize-events"),
    path("items", events.PutItemsView.as_view(), name="personalize-items"),
    path("users", events.PutUsersView.as_view(), name="personalize-users"),
]
