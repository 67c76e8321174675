from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required, login_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated

from recsite import login_throttle, views

# The OpenAPI schema and its Swagger UI are dashboard pages (logged-in users, session auth);
# the API they describe takes API keys. DRF views skip LoginRequiredMiddleware, hence
# login_required: anonymous visitors go to the login page. Swagger UI's assets come from
# drf-spectacular-sidecar (no CDN).
_DOCS_ACCESS = {
    "authentication_classes": [SessionAuthentication],
    "permission_classes": [IsAuthenticated],
}

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    # Django's login view with failed-attempt limits per username and per IP address.
    path("login/", login_throttle.LoginView.as_view(), name="login"),
    # The admin's own login form would bypass those limits: send it to the one above.
    path(
        "admin/login/",
        login_not_required(RedirectView.as_view(pattern_name="login", query_string=True)),
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("datasets.api_urls")),
    path("api/v1/", include("feeds.api_urls")),
    path("personalize/", include("feeds.personalize.urls")),
    path(
        "api/schema/",
        login_required(SpectacularAPIView.as_view(**_DOCS_ACCESS)),
        name="api-schema",
    ),
    path(
        "api/docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="api-schema", **_DOCS_ACCESS)),
        name="api-docs",
    ),
    path("", include("feeds.urls")),
    path("", include("datasets.urls")),
    path("", include("models_app.urls")),
    path("", include("graphs.urls")),
]

# JSON for unknown /api/ URLs, the usual 404 page elsewhere.
handler404 = "recsite.api_errors.api_or_page_not_found"
