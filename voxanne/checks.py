"""System checks: the application must not run as a role that row-level security ignores."""

from django.core.checks import Error, register
from django.db import connection


@register("database", deploy=False)
def check_database_role(app_configs=None, databases=None, **kwargs):
    if not databases or "default" not in databases:
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        row = cursor.fetchone()
    if row and row[0]:
        return [
            Error(
                "The database role is a superuser or has BYPASSRLS, so row-level security "
                "would not protect tenant data.",
                hint="Connect as an unprivileged role (scripts/stack.py creates `voxanne`).",
                id="voxanne.E001",
            )
        ]
    return []
