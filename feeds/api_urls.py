from django.urls import path

from feeds import api

urlpatterns = [
    path("recommendations", api.RecommendationsView.as_view(), name="api-recommendations"),
    path("items/<path:item_id>/related", api.RelatedItemsView.as_view(), name="api-related"),
    path("rank", api.RankView.as_view(), name="api-rank"),
    path("feeds/<str:name>", api.FeedView.as_view(), name="api-feed"),
]
