from django.urls import path

from datasets import import_views, views

urlpatterns = [
    path("p/<slug:slug>/data/", import_views.data_overview, name="data"),
    path("p/<slug:slug>/data/upload/", import_views.import_upload, name="import-upload"),
    path("p/<slug:slug>/data/schema/<str:kind>/", import_views.schema_edit, name="schema-edit"),
    path("p/<slug:slug>/data/imports/<int:job_id>/", import_views.import_job, name="import-job"),
    path(
        "p/<slug:slug>/data/imports/<int:job_id>/progress/",
        import_views.import_progress,
        name="import-progress",
    ),
    path(
        "p/<slug:slug>/data/imports/<int:job_id>/cancel/",
        import_views.import_cancel,
        name="import-cancel",
    ),
    path(
        "p/<slug:slug>/data/imports/<int:job_id>/retry/",
        import_views.import_retry,
        name="import-retry",
    ),
    path(
        "p/<slug:slug>/data/imports/<int:job_id>/rejected.csv",
        import_views.import_rejected_csv,
        name="import-rejected",
    ),
    path("", views.project_list, name="project-list"),
    path("projects/new/", views.project_create, name="project-create"),
    path("p/<slug:slug>/", views.project_overview, name="project-overview"),
    path("p/<slug:slug>/insights/", views.project_insights, name="insights"),
    path("p/<slug:slug>/api-keys/", views.api_keys, name="api-keys"),
    path(
        "p/<slug:slug>/api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api-key-revoke"
    ),
]
