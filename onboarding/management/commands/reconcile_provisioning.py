"""Finish or undo stuck phone-provisioning attempts now (what the beat task does every minute)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from onboarding.reconciler import reconcile_attempt, reconcile_stuck_attempts
from voxanne.tenancy import system_context


class Command(BaseCommand):
    help = "Finish or undo provisioning attempts whose lease has lapsed."

    def add_arguments(self, parser):
        parser.add_argument("--attempt", help="only this attempt id")

    def handle(self, *args, attempt=None, **options):
        with system_context("reconcile_provisioning command"):
            if attempt:
                result = reconcile_attempt(attempt_id=attempt)
                results = [result] if result else []
            else:
                results = reconcile_stuck_attempts()
        for result in results:
            self.stdout.write(f"{result.attempt_id} {result.outcome}")
        self.stdout.write(f"{len(results)} attempt(s) reconciled")
