"""Onboarding's panels on the clinic page (attached through voxanne.admin's hooks)."""

from __future__ import annotations
