from django.urls import include, path

from feeds import experiment_views, views

urlpatterns = [
    path("p/<slug:slug>/filters/", views.filter_list, name="filters"),
    path("p/<slug:slug>/filters/new/", views.filter_create, name="filter-create"),
    path("p/<slug:slug>/filters/preview/", views.filter_preview, name="filter-preview"),
    path("p/<slug:slug>/filters/<int:filter_id>/", views.filter_edit, name="filter-edit"),
    path(
        "p/<slug:slug>/filters/<int:filter_id>/delete/",
        views.filter_delete,
        name="filter-delete",
    ),
    path("p/<slug:slug>/promotions/", views.promotion_list, name="promotions"),
    path("p/<slug:slug>/promotions/new/", views.promotion_create, name="promotion-create"),
    path("p/<slug:slug>/promotions/params/", views.promotion_params, name="promotion-params"),
    path(
        "p/<slug:slug>/promotions/<int:promotion_id>/",
        views.promotion_edit,
        name="promotion-edit",
    ),
    path(
        "p/<slug:slug>/promotions/<int:promotion_id>/toggle/",
        views.promotion_toggle,
        name="promotion-toggle",
    ),
    path(
        "p/<slug:slug>/promotions/<int:promotion_id>/delete/",
        views.promotion_delete,
        name="promotion-delete",
    ),
    path("p/<slug:slug>/experiments/", experiment_views.experiment_list, name="experiments"),
    path(
        "p/<slug:slug>/experiments/<slug:name>/",
        experiment_views.experiment_detail,
        name="experiment-detail",
    ),
    path(
        "p/<slug:slug>/experiments/<slug:name>/<str:action>/",
        experiment_views.experiment_action,
        name="experiment-action",
    ),
    path(
        "p/<slug:slug>/experiments/<slug:name>/weights/save/",
        experiment_views.experiment_weights,
        name="experiment-weights",
    ),
    path("", include("feeds.feed_urls")),
]
