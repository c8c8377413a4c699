"""Abandonment's URLs, mounted under /api/abandonment/ by voxanne.urls."""

from django.urls import path

from abandonment import views

urlpatterns = [
    path(
        "unsubscribe/<str:token>", views.UnsubscribeView.as_view(), name="abandonment-unsubscribe"
    ),
]
