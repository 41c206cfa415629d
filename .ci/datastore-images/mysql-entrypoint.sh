#!/bin/sh
# The stand-in mariadb image's entrypoint: as the official image's does for what the
# plugin uses, root gets the password MARIADB_ROOT_PASSWORD (or MYSQL_ROOT_PASSWORD)
# and may connect from any address; the server then runs with the arguments given
# after "mariadbd".
set -e
[ "${1:-}" = mariadbd ] && shift
password="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
if [ -z "$password" ]; then
    echo "mariadb stand-in: MARIADB_ROOT_PASSWORD is not set" >&2
    exit 1
fi
# (printf: dash's builtin; the image has no other tools.)
printf "%s\n" \
    "ALTER USER 'root'@'localhost' IDENTIFIED BY '$password';" \
    "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$password';" \
    "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;" >/tmp/init.sql
exec mariadbd --no-defaults --datadir=/var/lib/mysql --socket=/var/run/mysqld/mysqld.sock \
    --bind-address=0.0.0.0 --port=3306 --init-file=/tmp/init.sql "$@"
