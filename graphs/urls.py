from django.urls import path

from graphs import views

urlpatterns = [
    path("p/<slug:slug>/segments/", views.segments, name="segments"),
    path("p/<slug:slug>/segments/graph/<int:run_id>/", views.graph_run, name="graph-run"),
    path(
        "p/<slug:slug>/segments/clustering/<int:run_id>/",
        views.clustering_run,
        name="clustering-run",
    ),
    path(
        "p/<slug:slug>/segments/clustering/<int:run_id>/save/",
        views.save_segment,
        name="clustering-save-segment",
    ),
    path(
        "p/<slug:slug>/segments/<str:kind>/<int:run_id>/progress/",
        views.run_progress,
        name="segments-run-progress",
    ),
    path(
        "p/<slug:slug>/segments/<str:kind>/<int:run_id>/cancel/",
        views.run_cancel,
        name="segments-run-cancel",
    ),
    path(
        "p/<slug:slug>/segments/<str:kind>/<int:run_id>/retry/",
        views.run_retry,
        name="segments-run-retry",
    ),
]
