"""db_app.legacy: psycopg2 (libpq in C as well), the connection made at init."""

import os

import psycopg2

connection = psycopg2.connect(os.environ["DATABASE_URL"])
connection.autocommit = True


def handler(event, context):
    with connection.cursor() as cursor:
        cursor.execute("select %s + 1", (event["n"],))
        return cursor.fetchone()[0]
