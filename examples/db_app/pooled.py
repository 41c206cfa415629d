"""db_app.pooled: a SQLAlchemy engine, made at init, whose pool keeps one connection.

pool_pre_ping tests a pooled connection before handing it out, so one that a NAT
gateway reset while the environment was frozen is replaced instead of failing. The
engine uses psycopg2: SQLAlchemy's psycopg (3) dialect toggles autocommit around its
ping, and when the reset lands mid-ping that toggle fails with ProgrammingError
("connection in transaction status ACTIVE"), which the pool does not read as a
disconnect, so the handler fails instead of reconnecting.
"""

import os

from sqlalchemy import create_engine, text

engine = create_engine(
    os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://", 1),
    pool_size=1,
    max_overflow=0,
    pool_pre_ping=True,
)


def handler(event, context):
    with engine.connect() as connection:
        return connection.execute(text("select :n + 1"), {"n": event["n"]}).scalar_one()
