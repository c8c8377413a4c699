"""Billing's signals, for apps above billing that must react to money (billing imports none
of them). Sent inside the transaction that wrote the money, so a receiver's rows commit or roll
back with it."""

from django.dispatch import Signal

# A top-up was credited for the first time. Arguments: topup (billing.models.TopUp).
topup_paid = Signal()
