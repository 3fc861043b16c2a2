"""Statement sanitising and naming shared by the data-store integrations."""

from __future__ import annotations

import pytest

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
