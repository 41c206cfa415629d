#!/usr/bin/env bash
# Build local stand-ins for the official redis, postgres and mariadb images, for the
# datastores' container backend tests on machines that reach no image registry.
#
#   .ci/datastore-images/build.sh [redis] [postgres] [mysql]   # default: all three
#                                       # needs DOCKER_HOST / a running engine
#                                       # (see .ci/docker-engine.sh)
#
# Each image is FROM scratch: this machine's own server binaries (Debian's
# redis-server, postgresql and mariadb-server packages) at their own paths, the shared
# libraries ldd lists for them, their data files, /bin/sh (dash) for a small entrypoint,
# and an /etc/passwd naming the server's user. Each behaves as its official image does
# for what the plugin uses: the server on its usual port on all addresses, and the
# superuser's password from POSTGRES_PASSWORD or MARIADB_ROOT_PASSWORD at first start.
#
# Images: pytest-lambda-context/{redis,postgres,mysql}-standin:local (the names
# tests/test_datastore_containers.py expects).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'datastore-images: %s\n' "$*" >&2; }

kinds=("$@")
[ "${#kinds[@]}" -gt 0 ] || kinds=(redis postgres mysql)

stage="$(mktemp -d)"
chmod 755 "$stage"  # the server user makes the system tables in it
trap 'rm -rf "$stage"' EXIT

# Copy files (binaries, libraries) to the same paths under $root, with the shared
# libraries (and the loader) they link against.
copy_with_libs() {
    local root="$1"
    shift
    local file lib
    for file in "$@"; do
        mkdir -p "$root$(dirname "$file")"
        cp -L "$file" "$root$file"
    done
    for lib in $(ldd "$@" 2>/dev/null | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\// {print $1}' | sort -u); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

# The common part: /tmp, /bin/sh, a passwd and group file with root and the server's user.
base_root() {
    local root="$1" user="$2" uid="$3"
    mkdir -p "$root/tmp" "$root/etc" "$root/bin"
    chmod 1777 "$root/tmp"
    copy_with_libs "$root" "$(readlink -f /bin/sh)"
    ln -sf "$(readlink -f /bin/sh)" "$root/bin/sh"
    printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:%s:%s:%s:/tmp:/bin/sh\n' "$user" "$uid" "$uid" "$user" >"$root/etc/passwd"
    printf 'root:x:0:\n%s:x:%s:\n' "$user" "$uid" >"$root/etc/group"
}

build() {
    local kind="$1" root="$2" dockerfile="$3"
    local context="$stage/$kind"
    local image="pytest-lambda-context/$kind-standin:local"
    tar -C "$root" --numeric-owner -cf "$context/rootfs.tar" .
    printf '%s\n' "$dockerfile" >"$context/Dockerfile"
    log "building $image ($(du -sh "$context/rootfs.tar" | cut -f1) root file system)"
    DOCKER_BUILDKIT=0 docker build -q -t "$image" "$context" >&2
    log "built $image"
}

build_redis() {
    local root="$stage/redis/rootfs"
    mkdir -p "$root"
    base_root "$root" redis 999
    copy_with_libs "$root" /usr/bin/redis-server
    build redis "$root" 'FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/bin:/bin
USER 999:999
WORKDIR /tmp
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]'
}

build_postgres() {
    local root="$stage/postgres/rootfs" bin
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    local version
    version="$(basename "$(dirname "$bin")")"
    mkdir -p "$root"
    base_root "$root" postgres 999
    copy_with_libs "$root" "$bin/initdb" "$bin/postgres"
    # Extension modules initdb loads (plpgsql, the snowball dictionaries), their libraries.
    copy_with_libs "$root" $(ls /usr/lib/postgresql/"$version"/lib/*.so | grep -v llvmjit)
    tar -C / -cf - "usr/share/postgresql/$version" usr/share/zoneinfo | tar -C "$root" -xf -
    mkdir -p "$root/var/lib/postgresql" "$root/var/run/postgresql"
    chown -R 999:999 "$root/var/lib/postgresql" "$root/var/run/postgresql"
    cp "$here/postgres-entrypoint.sh" "$root/entrypoint.sh"
    chmod 755 "$root/entrypoint.sh"
    build postgres "$root" "FROM scratch
ADD rootfs.tar /
ENV PATH=$bin:/bin PGDATA=/var/lib/postgresql/data
USER 999:999
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT [\"/entrypoint.sh\"]
CMD [\"postgres\"]"
}

build_mysql() {
    local root="$stage/mysql/rootfs"
    mkdir -p "$root"
    base_root "$root" mysql 999
    copy_with_libs "$root" /usr/sbin/mariadbd
    tar -C / -cf - usr/share/mysql | tar -C "$root" -xf -
    # The system tables, made here by the machine's own mariadb-install-db (as the
    # official image makes them at its first start).
    mkdir -p "$root/var/lib/mysql" "$root/var/run/mysqld"
    chown 999:999 "$root/var/lib/mysql" "$root/var/run/mysqld"
    local data="$stage/mysql-data"
    mkdir -p "$data"
    chown mysql "$data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$data" \
        --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve >/dev/null
    tar -C "$data" -cf - . | tar -C "$root/var/lib/mysql" -xf -
    chown -R 999:999 "$root/var/lib/mysql"
    cp "$here/mysql-entrypoint.sh" "$root/entrypoint.sh"
    chmod 755 "$root/entrypoint.sh"
    build mysql "$root" 'FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/sbin:/bin
USER 999:999
EXPOSE 3306
ENTRYPOINT ["/entrypoint.sh"]
CMD ["mariadbd"]'
}

for kind in "${kinds[@]}"; do
    mkdir -p "$stage/$kind"
    case "$kind" in
    redis) build_redis ;;
    postgres) build_postgres ;;
    mysql) build_mysql ;;
    *) log "unknown kind $kind: redis, postgres or mysql"; exit 2 ;;
    esac
done
