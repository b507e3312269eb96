"""The SQLite writer's multi-row statements."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collector.storage.sqlite_writer import connect, insert_rows, transaction


@pytest.mark.parametrize("n", [0, 1, 7, 1024, 1025, 3001])
@pytest.mark.parametrize("width", [3, 40])
def test_insert_rows_stores_every_row_in_order(tmp_path: Path, n: int, width: int) -> None:
    conn = connect(tmp_path / "w.db")
    cols = [f"c{i}" for i in range(width)]
    conn.execute(f"CREATE TABLE t (k INTEGER PRIMARY KEY, {', '.join(cols)})")
    rows = [(k, *(k * width + i for i in range(width))) for k in range(n)]
    transaction(conn, lambda db: insert_rows(db, f"INSERT INTO t (k, {', '.join(cols)})", rows))
    assert conn.execute("SELECT * FROM t ORDER BY rowid").fetchall() == rows
    conn.close()


def test_insert_rows_keeps_under_the_builds_limit_on_bound_values(tmp_path: Path) -> None:
    conn = connect(tmp_path / "w.db")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # older SQLite builds
    conn.execute("CREATE TABLE t (a, b, c, d, e, f, g, h, i, j)")
    rows = [tuple(range(k, k + 10)) for k in range(2500)]
    transaction(conn, lambda db: insert_rows(db, "INSERT INTO t", rows))
    assert conn.execute("SELECT * FROM t ORDER BY rowid").fetchall() == rows
    conn.close()


def test_insert_rows_with_an_upsert_tail_adds_up_repeated_keys(tmp_path: Path) -> None:
    conn = connect(tmp_path / "w.db")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    rows = [(f"k{i % 5}", i) for i in range(2000)]
    tail = "ON CONFLICT (k) DO UPDATE SET n = t.n + excluded.n"
    transaction(conn, lambda db: insert_rows(db, "INSERT INTO t (k, n)", rows, tail))
    transaction(conn, lambda db: insert_rows(db, "INSERT INTO t (k, n)", rows[:3], tail))
    want = {f"k{j}": sum(i for i in range(2000) if i % 5 == j) + (j if j < 3 else 0) for j in range(5)}
    assert dict(conn.execute("SELECT k, n FROM t").fetchall()) == want
    conn.close()


def test_a_failed_statement_rolls_the_whole_transaction_back(tmp_path: Path) -> None:
    conn = connect(tmp_path / "w.db")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    rows = [(k,) for k in range(1500)] + [(3,)]
    with pytest.raises(sqlite3.IntegrityError):
        transaction(conn, lambda db: insert_rows(db, "INSERT INTO t (k)", rows))
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.close()
