"""db_app.stale: a memoized psycopg connection, and nothing else.

While an environment is frozen, a NAT gateway (or an RDS proxy, or the server) may
drop its idle connection. psycopg does not notice a dead connection by itself: the
next query fails with OperationalError, and with functools.cache every invocation
after that gets the same dead connection. See db_app.stale_fixed for the fix.
"""

import functools
import os

import psycopg


@functools.cache
def get_connection() -> psycopg.Connection:
    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)


def handler(event, context):
    return get_connection().execute("select 1").fetchone()[0]
