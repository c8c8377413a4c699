"""Onboarding's API: the wizard's telemetry events, its status and its completion."""

from __future__ import annotations
