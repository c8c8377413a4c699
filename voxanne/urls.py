"""The composition root: the only module that names every app's URLs."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing.views import topup_return_page
from voxanne import views

api = [
    path("auth/signup", views.SignupView.as_view(), name="signup"),
    path("auth/token", views.TokenView.as_view(), name="token"),
    path("auth/token/refresh", views.RefreshView.as_view(), name="token-refresh"),
    path("", include("voice.urls")),
    path("onboarding/", include("onboarding.urls")),
    path("billing/", include("billing.urls")),
    path("abandonment/", include("abandonment.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api)),
    path("billing/topup/<uuid:topup_id>", topup_return_page, name="topup-return"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]
