"""The wizard's request and response bodies. Input is checked strictly: JSON types as sent."""

from __future__ import annotations

import json

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from onboarding.models import EventName

METADATA_MAX_BYTES = 8 * 1024
METADATA_MAX_DEPTH = 32
LAST_STEP_INDEX = 4


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: refuses true/false, 1.5 and "2" instead of coercing them."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A storable JSON string: refuses numbers, booleans, lists and objects instead of coercing
    them, and lone surrogates (valid JSON escapes that no UTF-8 database can store)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    """One of the choices, sent as a JSON string (ChoiceField alone would match str(data))."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class CutCharField(StrictCharField):
    """A string, stripped and then cut to max_length (longer input is not an error).

    Blank after stripping counts as not given (None): a stored value is never wiped by an
    empty wizard field.
    """

    def __init__(self, *, max_length: int, **kwargs):
        self.cut_length = max_length
        super().__init__(trim_whitespace=True, allow_blank=True, **kwargs)

    def run_validation(self, data=serializers.empty):
        value = super().run_validation(data)  # CharField answers blank input here, early
        return value[: self.cut_length] or None


def _storable(value: object) -> bool:
    """Whether a JSON value can be stored as it is: no NUL character anywhere (Postgres cannot
    store it) and nested at most METADATA_MAX_DEPTH deep (deeper would exhaust the stack of
    the JSON encoders on the way to the database)."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
        elif isinstance(item, dict | list):
            if depth >= METADATA_MAX_DEPTH:
                return False
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
                item = item.values()
            pending.extend((child, depth + 1) for child in item)
    return True


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": True,
        "description": (
            f"At most {METADATA_MAX_BYTES} bytes serialized (compact UTF-8 JSON), nested at "
            f"most {METADATA_MAX_DEPTH} levels deep."
        ),
    }
)
class MetadataField(serializers.JSONField):
    """A JSON object of at most METADATA_MAX_BYTES, serialized compactly as UTF-8."""

    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "too_large": f"Must be at most {METADATA_MAX_BYTES} bytes when serialized.",
        "unstorable": (
            f"Cannot be stored: NUL characters, or nested deeper than {METADATA_MAX_DEPTH} levels."
        ),
    }

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_object")
        if not _storable(data):
            self.fail("unstorable")
        try:
            encoded = json.dumps(
                data, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")
        except (UnicodeEncodeError, ValueError):  # lone surrogates; 1e400 parsed as infinity
            self.fail("unstorable")
        if len(encoded) > METADATA_MAX_BYTES:
            self.fail("too_large")
        return data


class OnboardingEventSerializer(serializers.Serializer):
    event_name = StrictChoiceField(
        choices=EventName.choices, error_messages={"invalid_choice": "Unknown event name."}
    )
    step_index = StrictIntegerField(min_value=0, max_value=LAST_STEP_INDEX)
    metadata = MetadataField(required=False, default=dict)
    session_id = StrictCharField(
        required=False, default="", allow_blank=True, max_length=100, trim_whitespace=False
    )


class OnboardingCompleteSerializer(serializers.Serializer):
    clinic_name = CutCharField(max_length=200, required=False)
    specialty = CutCharField(max_length=100, required=False)


class OnboardingSuccessSerializer(serializers.Serializer):
    success = serializers.BooleanField()


class OnboardingStatusSerializer(serializers.Serializer):
    needs_onboarding = serializers.BooleanField()
    completed_at = serializers.DateTimeField(allow_null=True)
    clinic_name = serializers.CharField(allow_null=True)
    specialty = serializers.CharField(allow_null=True)


# --- Paid phone-number provisioning --------------------------------------------------------

IDEMPOTENCY_KEY_MAX_LENGTH = 255


class ProvisionNumberSerializer(serializers.Serializer):
    """`{"area_code"?: "415"}`; anything else in the body (an `org_id`, say) is ignored."""

    area_code = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        error_messages={"invalid": 'Must be a string of 3 digits, like "415".'},
    )

    def validate_area_code(self, value: str | None) -> str | None:
        value = (value or "").strip()
        if not value:
            return None
        if len(value) != 3 or not value.isascii() or not value.isdigit():
            raise serializers.ValidationError('Must be 3 digits, like "415".')
        return value


class ProvisionedNumberSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    phoneNumber = serializers.CharField(help_text="E.164, e.g. +14155550123")  # noqa: N815
    alreadyProvisioned = serializers.BooleanField(required=False)  # noqa: N815


class NumberSerializer(serializers.Serializer):
    """GET /api/onboarding/number: the clinic's number and where its rental stands."""

    number = serializers.CharField(source="phone_number")
    status = serializers.ChoiceField(
        source="rental_status", choices=["active", "grace", "released"]
    )
    paid_until = serializers.DateTimeField()
    grace_until = serializers.DateTimeField(allow_null=True)
    monthly_price_pence = serializers.SerializerMethodField()
    released_at = serializers.DateTimeField(allow_null=True)

    def get_monthly_price_pence(self, number) -> int:
        return settings.NUMBER_MONTHLY_PENCE
