"""The composition root: the only module that names every app's URLs."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

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
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]
