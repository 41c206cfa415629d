#!/bin/sh
# The stand-in postgres image's entrypoint: as the official image's does for what the
# plugin uses, a first start makes the data folder with the superuser POSTGRES_USER
# (default postgres) and the password POSTGRES_PASSWORD, and accepts password logins
# from any address; the server then runs with the arguments given after "postgres".
set -e
[ "${1:-}" = postgres ] && shift
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "postgres stand-in: POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi
    printf '%s\n' "$POSTGRES_PASSWORD" >/tmp/pwfile
    initdb -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile=/tmp/pwfile \
        -A scram-sha-256 -E UTF8 --no-locale --no-sync >/dev/null
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
