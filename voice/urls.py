"""Voice's URLs, mounted under /api/ by voxanne.urls."""

from django.urls import path

from voice import views

urlpatterns = [
    path("agents", views.AgentListView.as_view(), name="agent-list"),
    path("agents/<str:agent_id>", views.AgentDetailView.as_view(), name="agent-detail"),
    path("calls", views.CallListView.as_view(), name="call-list"),
    path("calls/<str:call_id>", views.CallDetailView.as_view(), name="call-detail"),
    path("voice/vapi/webhook", views.VapiWebhookView.as_view(), name="vapi-webhook"),
]
