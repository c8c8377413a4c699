from django.urls import path

from billing import views

urlpatterns = [
    path("wallet", views.WalletView.as_view(), name="wallet"),
    path("wallet/transactions", views.TransactionListView.as_view(), name="wallet-transactions"),
]
