from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from recsite import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("datasets.api_urls")),
    path("", include("datasets.urls")),
    path("", include("models_app.urls")),
]

# JSON for unknown /api/ URLs, the usual 404 page elsewhere.
handler404 = "recsite.api_errors.api_or_page_not_found"
