from django.urls import path

from feeds import feed_views

urlpatterns = [
    path("p/<slug:slug>/feeds/", feed_views.feed_list, name="feeds"),
    path("p/<slug:slug>/feeds/params/", feed_views.feed_params, name="feed-params"),
    path("p/<slug:slug>/feeds/users/", feed_views.feed_users, name="feed-users"),
    path("p/<slug:slug>/feeds/<str:name>/", feed_views.feed_edit, name="feed-edit"),
    path("p/<slug:slug>/feeds/<str:name>/slots/", feed_views.feed_slots, name="feed-slots"),
    path("p/<slug:slug>/feeds/<str:name>/delete/", feed_views.feed_delete, name="feed-delete"),
    path("p/<slug:slug>/feeds/<str:name>/preview/", feed_views.feed_preview, name="feed-preview"),
]
