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
    path("p/<slug:slug>/models/compare/", views.compare_versions, name="models-compare"),
    path(
        "p/<slug:slug>/models/solutions/<int:solution_id>/schedule/",
        views.solution_schedule,
        name="solution-schedule",
    ),
    path(
        "p/<slug:slug>/models/solutions/<int:solution_id>/train/",
        views.solution_train,
        name="solution-train",
    ),
]

# --- campaigns ---
from models_app import campaign_views  # noqa: E402

urlpatterns += [
    path("p/<slug:slug>/campaigns/", campaign_views.campaigns, name="campaigns"),
    path(
        "p/<slug:slug>/campaigns/<int:campaign_id>/deploy/",
        campaign_views.campaign_deploy,
        name="campaign-deploy",
    ),
    path(
        "p/<slug:slug>/campaigns/<int:campaign_id>/rollback/",
        campaign_views.campaign_rollback,
        name="campaign-rollback",
    ),
    path(
        "p/<slug:slug>/campaigns/<int:campaign_id>/settings/",
        campaign_views.campaign_settings,
        name="campaign-settings",
    ),
    path(
        "p/<slug:slug>/campaigns/<int:campaign_id>/delete/",
        campaign_views.campaign_delete,
        name="campaign-delete",
    ),
]

# --- batch exports ---
from models_app import export_views  # noqa: E402

urlpatterns += [
    path("p/<slug:slug>/models/exports/", export_views.exports_page, name="exports"),
    path("p/<slug:slug>/models/exports/<int:export_id>/", export_views.export_page, name="export"),
    path(
        "p/<slug:slug>/models/exports/<int:export_id>/progress/",
        export_views.export_progress,
        name="export-progress",
    ),
    path(
        "p/<slug:slug>/models/exports/<int:export_id>/cancel/",
        export_views.export_cancel,
        name="export-cancel",
    ),
    path(
        "p/<slug:slug>/models/exports/<int:export_id>/download/",
        export_views.export_download,
        name="export-download",
    ),
]
