"""Support staff's money forms (admin). Amounts are typed in pounds and cleaned to pence.

Each form carries a nonce made when it is rendered: the service's idempotency key is built from
it, so the same rendered form submitted twice (double click, back button) moves money once.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError

from billing.models import EntryType


def pounds(pence: int) -> str:
    """1234 -> '12.34' (a form's initial amount)."""
    return f"{Decimal(pence) / 100:.2f}"


# Pounds as support types them: ASCII digits, commas only as thousands separators in groups of
# three, at most two decimals. "10,50" (a decimal comma), "1_000", "1e3" or non-ASCII digits
# are refused rather than guessed at: Decimal() would read them as other amounts.
PLAIN_POUNDS = re.compile(r"(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.[0-9]{1,2})?")


class PenceField(forms.CharField):
    """An amount in pounds ('12', '12.5', '£12.34', '1,000.50'), cleaned to a positive int of
    pence. Anything else is a form error."""

    default_error_messages = {
        "invalid": "Enter an amount in pounds, such as 12.50.",
        "min_value": "Enter an amount of at least £0.01.",
        "max_value": "Enter an amount of at most £1,000,000.00.",
    }
    max_pence = 100_000_000

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 20)
        super().__init__(**kwargs)

    def clean(self, value) -> int:
        text = super().clean(value)
        text = text.strip().removeprefix("£").strip()
        if not PLAIN_POUNDS.fullmatch(text):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        pence = int(Decimal(text.replace(",", "")) * 100)
        if pence < 1:
            raise ValidationError(self.error_messages["min_value"], code="min_value")
        if pence > self.max_pence:
            raise ValidationError(self.error_messages["max_value"], code="max_value")
        return pence


class MoneyForm(forms.Form):
    amount = PenceField(label="Amount (£)")
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why. A staff-only note on the ledger entry; the clinic sees a plain description.",
    )
    confirm = forms.BooleanField(required=True)
    nonce = forms.UUIDField(widget=forms.HiddenInput)

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Give a reason.")
        return reason


class RefundForm(MoneyForm):
    field_order = ["amount", "reason", "confirm"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["confirm"].label = "I confirm this refund"


class CreditForm(MoneyForm):
    type = forms.ChoiceField(
        label="Kind",
        choices=[
            (EntryType.TOPUP.value, "Top-up (payment received)"),
            (EntryType.ADJUSTMENT.value, "Goodwill adjustment"),
        ],
    )
    field_order = ["type", "amount", "reason", "confirm"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["confirm"].label = "I confirm this credit"


class CardRefundForm(RefundForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["confirm"].label = "I confirm this refund to the card"


class UnfreezeForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why spending is allowed again. Kept in the clinic's history.",
    )
    confirm = forms.BooleanField(required=True, label="I confirm spending is allowed again")

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Give a reason.")
        return reason
