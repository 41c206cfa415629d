"""db_app.memoized: one PostgreSQL connection per execution environment (psycopg 3).

psycopg connects through libpq, in C: Python's sockets never see it. The tests give
DATABASE_URL the address of a tcp_proxy, which counts every connection that reaches it.
"""

import functools
import os

import psycopg


@functools.cache  # one connection per execution environment
def get_connection() -> psycopg.Connection:
    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)


def handler(event, context):
    row = get_connection().execute("select %s::int + 1", (event["n"],)).fetchone()
    return row[0]
