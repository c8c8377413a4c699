"""Tenancy: two walls between clinics.

Wall 1: every API query goes through `TenantQuerySet.for_org(org)` or an access function
built on it (`get_for_org`), which gives the same 404 for "missing" and "not yours".

Wall 2: Postgres row-level security, enabled and FORCED on every tenant-owned table. The
policy admits rows whose org_id equals the `app.org_id` setting of the connection, or every
row while `app.system` is on. Nothing set means nothing visible. The settings follow a
context variable, re-applied to every new connection:

- a request starts with nothing set; authentication then activates the token's org (the end
  of a request leaves that org on the connection: the next request's start resets it first,
  so a reset at both ends would cost a round trip per request for nothing);
- the providers' webhooks (Stripe, Vapi) start in the system scope instead: they are
  authenticated by a signature or a secret, not by a clinic's token, and act for whichever
  clinic the event names;
- admin, signup/login, commands and background jobs run inside `system_context(reason)`.

The users table (`voxanne_user`) is deliberately outside RLS. A user is looked up before any
tenant is known: by email at sign-in (API and admin), by id from a token on every request, and
by Django's own code that knows nothing of our scopes (the admin's login, `createsuperuser`,
`changepassword`, django-axes). Under RLS each of those would need a system scope opened
first, so every request would spend a moment able to see every clinic's rows, a wider hole
than the one closed; support staff have no org at all. The table holds identities, not clinic
data, and wall 1 is enough: no API route reads users except that lookup by the signed token's
user id, and `tests/core/test_tenancy.py::test_the_api_never_lists_users` holds that no route
names users and no answer shows another clinic's staff.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

from django.db import DatabaseError, connection, models
from django.db.backends.signals import connection_created
from django.db.migrations.operations.special import RunSQL
from django.dispatch import receiver

from voxanne.errors import NotFound, error_response

logger = logging.getLogger("voxanne.tenancy")


@dataclass(frozen=True)
class TenantState:
    org_id: str = ""
    system: bool = False


_DENY = TenantState()
_state: ContextVar[TenantState] = ContextVar("tenant_state", default=_DENY)


def _apply(state: TenantState, conn=None) -> None:
    conn = conn or connection
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('app.org_id', %s, false), set_config('app.system', %s, false)",
            [state.org_id, "on" if state.system else "off"],
        )


@receiver(connection_created)
def _apply_to_new_connection(sender, connection, **kwargs) -> None:
    state = _state.get()
    if connection.vendor == "postgresql" and state != _DENY:
        _apply(state, connection)


@contextmanager
def _scope(state: TenantState) -> Iterator[None]:
    token = _state.set(state)
    _apply(state)
    try:
        yield
    finally:
        _state.reset(token)
        try:
            if not connection.needs_rollback:
                _apply(_state.get())
        except DatabaseError:
            # A broken connection is discarded; a new one gets the state on connect.
            logger.warning("could not restore tenant settings", exc_info=True)


@contextmanager
def system_context(reason: str) -> Iterator[None]:
    """Run with every org's rows visible: admin, signup/login, jobs. `reason` is for grep."""
    with _scope(TenantState(system=True)):
        yield


@contextmanager
def org_context(org_id: UUID | str) -> Iterator[None]:
    """Run as one org: RLS admits only its rows."""
    with _scope(TenantState(org_id=str(org_id))):
        yield


@contextmanager
def deny_context() -> Iterator[None]:
    """Run with nothing visible until an org is activated."""
    with _scope(_DENY):
        yield


@contextmanager
def request_scope(*, system: bool = False) -> Iterator[None]:
    """A request's scope: nothing visible on entry, until authentication activates an org
    (or, with `system`, every org's rows: a provider's webhook).

    On exit the context variable goes back, but the connection keeps the request's state (an
    org, or a webhook's system scope) when the enclosing one is deny: a server thread between
    requests, where nothing reads tenant rows before the next request's scope. Every request
    scope starts by applying its state, so applying deny on the way out as well would be a
    round trip for nothing. Any other enclosing state (a test's system scope) is re-applied.
    """
    state = TenantState(system=True) if system else _DENY
    token = _state.set(state)
    _apply(state)
    try:
        yield
    finally:
        _state.reset(token)
        outer = _state.get()
        if outer != _DENY:
            try:
                if not connection.needs_rollback:
                    _apply(outer)
            except DatabaseError:
                logger.warning("could not restore tenant settings", exc_info=True)


def activate_org(org_id: UUID | str) -> None:
    """Switch the current scope (a request) to one org; the enclosing scope restores it."""
    state = TenantState(org_id=str(org_id))
    _state.set(state)
    _apply(state)


def current_org_id() -> str:
    return _state.get().org_id


class TenantMiddleware:
    """Every request starts with no org (default deny); /admin/ and the providers' webhooks
    run in the system context.

    Only the health checks skip it: /healthz must not need the database, and /readyz reports
    the database's state itself.
    """

    HEALTH_PATHS = ("/healthz", "/readyz")
    # Set here, once per delivery, rather than by a system_context in the view: that would
    # send the deny, then the system, then the deny again (bench/calls.py: a report's
    # statements 8 -> 6, an assistant-request's 4 -> 2). Their views check the signature or
    # the secret before they read anything.
    WEBHOOK_PATHS = ("/api/billing/stripe/webhook", "/api/voice/vapi/webhook")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path in self.HEALTH_PATHS:
            return self.get_response(request)
        if request.path.startswith("/admin/"):
            scope = system_context("admin")
        else:
            scope = request_scope(system=request.path in self.WEBHOOK_PATHS)
        try:
            scope.__enter__()
        except DatabaseError:
            logger.error("database unavailable at request start", exc_info=True)
            return error_response(503)
        try:
            return self.get_response(request)
        finally:
            scope.__exit__(None, None, None)


class TenantQuerySet(models.QuerySet):
    def for_org(self, org) -> TenantQuerySet:
        org_id = getattr(org, "pk", org)
        return self.filter(org_id=org_id)


def get_for_org(queryset: models.QuerySet, org, object_id) -> models.Model:
    """The org's row with this id, or NotFound: the same for missing, malformed and not yours."""
    try:
        UUID(str(object_id))
    except ValueError:
        raise NotFound() from None
    obj = queryset.for_org(org).filter(pk=object_id).first()
    if obj is None:
        raise NotFound()
    return obj


_POLICY_EXPR = (
    "(current_setting('app.system', true) = 'on' "
    "OR org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)"
)


def enable_row_level_security(table: str) -> RunSQL:
    """Migration operation: FORCE RLS on a tenant-owned table with the tenant policy."""
    return RunSQL(
        sql=[
            f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
            f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
            f'CREATE POLICY tenant_isolation ON "{table}" USING {_POLICY_EXPR} WITH CHECK {_POLICY_EXPR}',
        ],
        reverse_sql=[
            f'DROP POLICY IF EXISTS tenant_isolation ON "{table}"',
            f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY',
            f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
        ],
    )
