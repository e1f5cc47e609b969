"""Inserting many rows without a model instance each. The log collector
stores thousands of lines a second and the metrics collection hundreds of
readings a period; bulk_create builds and prepares a model instance per row,
which costs more than the insert itself."""

from __future__ import annotations

from functools import cache

from django.db import connections
from django.db.models import DateTimeField


def insert(using: str, model, fields: tuple[str, ...], rows: list[tuple], *, cursor=None) -> None:
    """Inserts `rows`, each a tuple of the `fields`' values as the model
    holds them (datetimes aware), with one statement run for all of them."""
    if not rows:
        return
    connection = connections[using]
    adapt = connection.ops.adapt_datetimefield_value
    for index in _datetime_positions(model, fields):
        rows = [(*row[:index], adapt(row[index]), *row[index + 1:]) for row in rows]
    if cursor is not None:
        cursor.executemany(insert_statement(using, model, fields), rows)
        return
    with connection.cursor() as own:
        own.executemany(insert_statement(using, model, fields), rows)


@cache
def insert_statement(using: str, model, fields: tuple[str, ...]) -> str:
    quote = connections[using].ops.quote_name
    columns = ", ".join(quote(model._meta.get_field(name).column) for name in fields)
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"


@cache
def _datetime_positions(model, fields: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(index for index, name in enumerate(fields) if isinstance(model._meta.get_field(name), DateTimeField))
