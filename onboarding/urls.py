"""Onboarding's URLs, mounted under /api/onboarding/ by voxanne.urls."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
