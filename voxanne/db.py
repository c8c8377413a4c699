"""One model row read, inserted or updated without the ORM's query compiler, for the webhooks'
hot rows (the inbox event, the Call, the top-up a payment pays, its payment_success event, the
renewal check's number), and `fetch_row` for the hot statements written as SQL. The statements
are the ones Model.save() and QuerySet.get() would send, each field's `pre_save` (auto_now,
auto_now_add) and database preparation (JSON, UUIDs, times) included, read back with
Model.from_db. No signals are sent, so these are only for models nobody listens to.

Why: on the 2-core machine an ORM `create()`, `get()` or `save(update_fields=...)` of one of
these rows spent 0.7-1.4 ms of Python compiling its statement, where these spend about 0.1 ms
(scratch measurement of 150 rows, 2026-12-01), and a whole webhook delivery cost 4-10 ms:
bench/calls.py and bench/topups.py carry the effect. Each statement is built once.
"""

from __future__ import annotations

from functools import cache

from django.db import connection, models


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _field(meta, name: str) -> models.Field:
    return meta.pk if name == "pk" else meta.get_field(name)


@cache
def _insert_sql(model: type[models.Model]) -> str:
    fields = model._meta.concrete_fields
    columns = ", ".join(_quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {_quote(model._meta.db_table)} ({columns}) VALUES ({marks})"


@cache
def _insert_new_sql(model: type[models.Model]) -> str:
    return f"{_insert_sql(model)} ON CONFLICT DO NOTHING RETURNING 1"


@cache
def _select_sql(model: type[models.Model], where: tuple[str, ...], lock: bool) -> str:
    meta = model._meta
    columns = ", ".join(_quote(f.column) for f in meta.concrete_fields)
    match = " AND ".join(f"{_quote(_field(meta, name).column)} = %s" for name in where)
    suffix = " FOR UPDATE" if lock else ""
    return f"SELECT {columns} FROM {_quote(meta.db_table)} WHERE {match} LIMIT 1{suffix}"


@cache
def _update_sql(model: type[models.Model], names: tuple[str, ...]) -> str:
    meta = model._meta
    sets = ", ".join(f"{_quote(meta.get_field(name).column)} = %s" for name in names)
    return f"UPDATE {_quote(meta.db_table)} SET {sets} WHERE {_quote(meta.pk.column)} = %s"


def fetch_row(sql: str, params) -> tuple | None:
    """The first row of one SQL statement on Django's cursor (the hot statements written as
    SQL: billing/services.py, voice/services.py), or None."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _insert_values(obj: models.Model) -> list:
    """The INSERT's values, as save() prepares them (auto_now_add and the rest run here)."""
    return [
        f.get_db_prep_save(f.pre_save(obj, True), connection) for f in obj._meta.concrete_fields
    ]


def _saved(obj: models.Model) -> None:
    obj._state.adding = False
    obj._state.db = connection.alias


def insert(obj: models.Model) -> models.Model:
    """INSERT `obj` (a new instance whose primary key has a default) and return it, saved.
    Raises django.db.IntegrityError as save() does."""
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(type(obj)), _insert_values(obj))
    _saved(obj)
    return obj


def insert_new(obj: models.Model) -> bool:
    """INSERT `obj` unless that would break a unique constraint (ON CONFLICT DO NOTHING):
    True if it was inserted, and `obj` is saved. An insert of the same key by a transaction
    still open waits for it to end: False if it committed, inserted if it rolled back.

    Nothing is raised for a row that exists, so the transaction goes on rather than rolling
    back (a rollback would also throw away psycopg's prepared statements on the connection).
    """
    with connection.cursor() as cursor:
        cursor.execute(_insert_new_sql(type(obj)), _insert_values(obj))
        if cursor.fetchone() is None:
            return False
    _saved(obj)
    return True


def get(model: type[models.Model], *, lock: bool = False, **where) -> models.Model | None:
    """The row whose fields equal `where` (the first, if several do), or None; `lock` takes
    it FOR UPDATE, as select_for_update().get() would."""
    meta = model._meta
    names = tuple(where)
    values = [_field(meta, n).get_db_prep_value(where[n], connection) for n in names]
    row = fetch_row(_select_sql(model, names, lock), values)
    if row is None:
        return None
    return model.from_db(connection.alias, [f.attname for f in meta.concrete_fields], row)


def update(obj: models.Model, names: set[str] | list[str]) -> None:
    """UPDATE the named fields of a saved `obj`, as save(update_fields=names) would."""
    meta = obj._meta
    names = tuple(sorted(names))
    fields = [meta.get_field(n) for n in names]
    values = [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(type(obj), names), [*values, obj.pk])
