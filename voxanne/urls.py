"""The composition root: the only module that names every app's URLs."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from voxanne import views

api = [
    path("auth/signup", views.SignupView.as_view(), name="signup"),
    path("auth/token", views.TokenView.as_view(), name="token"),
    path("auth/token/refresh", views.RefreshView.as_view(), name="token-refresh"),
    path(
        "auth/verify-email/resend",
        views.ResendVerificationView.as_view(),
        name="verify-email-resend",
    ),
    path("auth/verify-email/<str:token>", views.VerifyEmailView.as_view(), name="verify-email"),
    path("agents", views.AgentListView.as_view(), name="agent-list"),
    path("agents/<str:agent_id>", views.AgentDetailView.as_view(), name="agent-detail"),
    path("calls", views.CallListView.as_view(), name="call-list"),
    path("calls/<str:call_id>", views.CallDetailView.as_view(), name="call-detail"),
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
