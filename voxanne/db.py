"""One INSERT of a new model instance without the ORM's query compiler, for the webhooks'
rows (the inbox event, the Call): written as Model.save() would write it, each field's
`pre_save` (auto_now, auto_now_add) and database preparation (JSON, UUIDs, times) included.
No signals are sent, so it is only for models nobody listens to.

Why: on the 2-core machine an ORM `create()` of one of these rows spent about 0.7 ms of
Python compiling its statement, a tenth of a call report's whole cost, where this spends
about 0.1 ms (scratch measurement of 150 rows, 2026-12-01; bench/calls.py and
bench/topups.py carry the effect). The SQL is built once per model.
"""

from __future__ import annotations

from functools import cache

from django.db import connection, models


@cache
def _insert_sql(model: type[models.Model]) -> str:
    meta = model._meta
    columns = ", ".join(connection.ops.quote_name(f.column) for f in meta.concrete_fields)
    marks = ", ".join(["%s"] * len(meta.concrete_fields))
    return f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) VALUES ({marks})"


def insert(obj: models.Model) -> models.Model:
    """INSERT `obj` (a new instance whose primary key has a default) and return it, saved.
    Raises django.db.IntegrityError as save() does."""
    fields = obj._meta.concrete_fields
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(type(obj)), values)
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj
