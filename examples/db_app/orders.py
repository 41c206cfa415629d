"""db_app.orders: one PyMySQL connection per execution environment, checked before use.

PyMySQL connects in Python, so the socket layer sees it (with this file's line) and so
does the mysql fixture's proxy. A ``ping()`` before use finds a connection that died
while the environment was frozen, and a new one replaces it (PyMySQL 1.1 deprecates
``ping(reconnect=True)``, which did this).
"""

import functools
import os

import pymysql


@functools.cache  # one connection per execution environment
def _connect() -> pymysql.connections.Connection:
    return pymysql.connect(
        host=os.environ["DB_HOST"],
        port=int(os.environ["DB_PORT"]),
        user=os.environ["DB_USER"],
        password=os.environ["DB_PASSWORD"],
        database=os.environ["DB_NAME"],
        autocommit=True,
    )


def get_connection() -> pymysql.connections.Connection:
    connection = _connect()
    try:
        connection.ping()  # one round trip: is the kept connection alive?
    except pymysql.err.OperationalError:
        _connect.cache_clear()  # reset while frozen: open a new one, once
        connection = _connect()
    return connection


def handler(event, context):
    connection = get_connection()
    with connection.cursor() as cursor:
        cursor.execute("select %s + 1", (event["n"],))
        return cursor.fetchone()[0]
