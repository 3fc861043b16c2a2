"""Statement sanitising and naming shared by the data-store integrations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asynctrace._datastore import query_name, sanitize_sql


@pytest.mark.parametrize(
    ("statement", "sanitized"),
    [
        ("SELECT id FROM orders WHERE id = $1", "SELECT id FROM orders WHERE id = ?"),
        ("select * from t where name = 'o''brien'", "select * from t where name = ?"),
        ("SELECT 1.5e3, .5, 42", "SELECT ?, ?, ?"),
        ("SELECT t1.c2 FROM t1", "SELECT t1.c2 FROM t1"),
        ("SELECT $$it's$$, $tag$x$tag$", "SELECT ?, ?"),
        ('SELECT "col 1" FROM "Orders"', 'SELECT "col 1" FROM "Orders"'),
        ("SELECT a -- 'x'\nFROM t /* 'y' */ WHERE b = E'\\n'", "SELECT a FROM t WHERE b = ?"),
        ("DELETE FROM t WHERE id IN (1, 2, 3)", "DELETE FROM t WHERE id IN (?)"),
        ("INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)", "INSERT INTO t (a, b) VALUES (?)"),
        ("SELECT '-- not a comment', x FROM t", "SELECT ?, x FROM t"),
    ],
)
def test_literals_and_parameters_become_placeholders(statement: str, sanitized: str) -> None:
    assert sanitize_sql(statement) == sanitized


@pytest.mark.parametrize(
    ("sanitized", "name"),
    [
        ("SELECT id, total FROM orders WHERE id = ?", "SELECT \u2026 FROM orders WHERE id = ?"),
        (
            "SELECT id, pg_sleep(?) FROM orders WHERE id = ?",
            "SELECT \u2026 FROM orders WHERE id = ?",
        ),
        ("SELECT (SELECT ? FROM a) FROM b", "SELECT \u2026 FROM b"),
        ("SELECT pg_sleep(?)", "SELECT pg_sleep(?)"),
        ("UPDATE t SET n = n + ? WHERE k = ?", "UPDATE t SET n = n + ? WHERE k = ?"),
    ],
)
def test_query_names_elide_a_selects_columns(sanitized: str, name: str) -> None:
    assert query_name(sanitized) == name


def test_long_statements_are_cut_with_a_mark() -> None:
    name = query_name("UPDATE t SET " + ", ".join(f"c{i} = ?" for i in range(100)))

    assert len(name) == 120
    assert name.endswith("\u2026")


@pytest.mark.parametrize("literal", ["0x1F", "0o17", "0b1010", "1_000_000", "1.5e-3"])
def test_postgres_16_number_forms_are_literals(literal: str) -> None:
    assert sanitize_sql(f"SELECT {literal}") == "SELECT ?"


_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@given(
    value=_TEXT,
    number=st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
)
def test_no_literal_value_survives(value: str, number: float) -> None:
    quoted = "'" + value.replace("'", "''") + "'"
    statement = f"SELECT a FROM t WHERE name = {quoted} AND n > {abs(number)!r}"

    assert sanitize_sql(statement) == "SELECT a FROM t WHERE name = ? AND n > ?"
