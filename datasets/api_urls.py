from django.urls import path

from datasets import api

urlpatterns = [
    path("events", api.EventsView.as_view(), name="api-events"),
    path("users", api.UsersView.as_view(), name="api-users"),
    path("items", api.ItemsView.as_view(), name="api-items"),
]
