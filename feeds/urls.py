from django.urls import path

from feeds import views

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
]
