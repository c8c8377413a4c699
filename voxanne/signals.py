"""Signals the core sends, so apps can add to its writes without the core importing them."""

from django.dispatch import Signal

# Sent inside the signup transaction, with `organization`: a receiver that raises rolls the
# signup back. Billing opens the org's wallet here.
organization_created = Signal()
