"""db_app.orders_per_invocation: a new PyMySQL connection in every invocation (the
anti-pattern max_connections catches)."""

import os

import pymysql


def handler(event, context):
    connection = pymysql.connect(
        host=os.environ["DB_HOST"],
        port=int(os.environ["DB_PORT"]),
        user=os.environ["DB_USER"],
        password=os.environ["DB_PASSWORD"],
        database=os.environ["DB_NAME"],
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("select %s + 1", (event["n"],))
            return cursor.fetchone()[0]
    finally:
        connection.close()
