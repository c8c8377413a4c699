from django.urls import path

from billing import views

urlpatterns = [
    path("wallet", views.WalletView.as_view(), name="wallet"),
    path("wallet/transactions", views.TransactionListView.as_view(), name="wallet-transactions"),
    path("wallet/topup", views.TopUpView.as_view(), name="wallet-topup"),
    path("wallet/auto-recharge", views.AutoRechargeView.as_view(), name="wallet-auto-recharge"),
    path("topups", views.TopUpListView.as_view(), name="topup-list"),
    path("topups/<str:topup_id>", views.TopUpDetailView.as_view(), name="topup-detail"),
    path("stripe/webhook", views.StripeWebhookView.as_view(), name="stripe-webhook"),
]
