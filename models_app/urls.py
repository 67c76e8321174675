from django.urls import path

from models_app import views

urlpatterns = [
    path("p/<slug:slug>/models/", views.models_overview, name="models"),
    path("p/<slug:slug>/models/runs/<int:run_id>/", views.training_run, name="training-run"),
    path(
        "p/<slug:slug>/models/runs/<int:run_id>/progress/",
        views.training_run_progress,
        name="training-run-progress",
    ),
    path(
        "p/<slug:slug>/models/runs/<int:run_id>/cancel/",
        views.training_run_cancel,
        name="training-run-cancel",
    ),
    path(
        "p/<slug:slug>/models/runs/<int:run_id>/retry/",
        views.training_run_retry,
        name="training-run-retry",
    ),
]
