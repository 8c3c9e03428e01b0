"""The harness itself: the database fixture answers, databases are isolated, the server goes away."""

from __future__ import annotations

import psycopg2


def test_database_fixture_answers_a_query(database_url: str) -> None:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select current_database(), 6 * 7")
        name, answer = cur.fetchone()
    assert name.startswith("t_")
    assert answer == 42


def test_each_test_gets_a_clean_database(database_url: str) -> None:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from pg_tables where schemaname = 'public'")
        assert cur.fetchone()[0] == 0
        cur.execute("create table scratch (id int)")
