"""db_app.stale_fixed: reconnect once when the kept connection turns out to be dead."""

import os

import psycopg

_connection = None


def get_connection(fresh: bool = False) -> psycopg.Connection:
    global _connection
    if fresh or _connection is None or _connection.closed:
        if _connection is not None:
            _connection.close()
        _connection = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    return _connection


def handler(event, context):
    try:
        return get_connection().execute("select 1").fetchone()[0]
    except psycopg.OperationalError:
        # Reset while the environment was frozen: psycopg learns it only now. The query
        # is idempotent, so one retry on a new connection is safe.
        return get_connection(fresh=True).execute("select 1").fetchone()[0]
