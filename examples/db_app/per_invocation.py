"""db_app.per_invocation: the anti-pattern, a new PostgreSQL connection per invocation."""

import os

import psycopg


def handler(event, context):
    with psycopg.connect(os.environ["DATABASE_URL"]) as connection:
        return connection.execute("select %s::int + 1", (event["n"],)).fetchone()[0]
