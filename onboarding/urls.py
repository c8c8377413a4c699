"""Onboarding's URLs, mounted under /api/onboarding/ by voxanne.urls."""

from django.urls import path

from onboarding import views

urlpatterns = [
    path("event", views.OnboardingEventView.as_view(), name="onboarding-event"),
    path("status", views.OnboardingStatusView.as_view(), name="onboarding-status"),
    path("complete", views.OnboardingCompleteView.as_view(), name="onboarding-complete"),
    path(
        "provision-number", views.ProvisionNumberView.as_view(), name="onboarding-provision-number"
    ),
    path("number", views.NumberView.as_view(), name="onboarding-number"),
]
