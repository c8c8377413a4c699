"""Argument types the management commands share."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime


def instant(value: str) -> datetime:
    """An aware datetime from an ISO-8601 date and time (naive means UTC), for `type=`.

    Raises argparse.ArgumentTypeError for anything else."""
    parsed = parse_datetime(value)
    if parsed is None:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 date and time, not {value!r}")
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
