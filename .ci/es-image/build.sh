#!/usr/bin/env bash
# Build a local Docker image that serves the embedded Elasticsearch stand-in on
# 0.0.0.0:9200, without pulling anything: no registry is reachable on CI machines.
#
#   .ci/es-image/build.sh [--check]        # needs DOCKER_HOST / a running engine
#                                          # (see .ci/docker-engine.sh)
#
# The image is FROM scratch: a root file system assembled from this machine holding
# the Python interpreter of the running virtual environment (its real path, so it
# finds its own stdlib and libpython exactly as on the host), its stdlib without
# site-packages and test suites, the shared libraries ldd lists for the interpreter
# and its extension modules, and the stand-in's modules of this package.
#
# Environment: IMAGE (default pytest-lambda-context/es-standin:local),
# PYTHON (default: $VIRTUAL_ENV/bin/python, else the repository's .venv, else python3).
# --check: run the image with -p 127.0.0.1::9200 and require GET / to answer.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
image="${IMAGE:-pytest-lambda-context/es-standin:local}"
check=0
[ "${1:-}" = "--check" ] && check=1

log() { printf 'es-image: %s\n' "$*" >&2; }

python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
        python="$VIRTUAL_ENV/bin/python"
    elif [ -x "$repo/.venv/bin/python" ]; then
        python="$repo/.venv/bin/python"
    else
        python="python3"
    fi
fi

# The interpreter behind the venv's symlink, its stdlib and its extension modules.
read -r exe stdlib dynload < <("$python" - <<'EOF'
import os, sys, sysconfig
stdlib = os.path.dirname(os.path.realpath(os.__file__))
dynload = os.path.join(stdlib, "lib-dynload")
if not os.path.isdir(dynload):
    dynload = sysconfig.get_config_var("DESTSHARED") or dynload
print(os.path.realpath(sys.executable), stdlib, os.path.realpath(dynload))
EOF
)
[ -x "$exe" ] && [ -f "$stdlib/os.py" ] || { log "cannot locate the interpreter or stdlib of $python"; exit 1; }
log "interpreter $exe, stdlib $stdlib"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
mkdir -p "$root/tmp" "$root/app"
chmod 1777 "$root/tmp"

# The interpreter and its stdlib, at their real paths. Left out: third-party
# packages, test suites, GUI and packaging tools (tkinter would pull in X11).
mkdir -p "$root$(dirname "$exe")"
cp -p "$exe" "$root$exe"
tar -C / -cf - \
    --exclude="${stdlib#/}/site-packages" --exclude="${stdlib#/}/dist-packages" \
    --exclude="${stdlib#/}/test" --exclude="${stdlib#/}/idlelib" \
    --exclude="${stdlib#/}/tkinter" --exclude="${stdlib#/}/turtledemo" \
    --exclude="${stdlib#/}/ensurepip" --exclude="${stdlib#/}/lib2to3" \
    --exclude="${stdlib#/}/config-*" --exclude='_tkinter*.so' --exclude='*_test*.so' \
    "${stdlib#/}" | tar -C "$root" -xf -
if [ "$dynload" != "$stdlib/lib-dynload" ] && [ -d "$dynload" ]; then
    mkdir -p "$root$dynload"
    cp -p "$dynload"/*.so "$root$dynload/"
    rm -f "$root$dynload"/_tkinter*.so
fi

# Shared libraries (and the loader) that the interpreter and the kept extension
# modules link against, copied as files to the paths ldd resolved them to.
libs="$(
    { ldd "$exe"; ldd "$root$dynload"/*.so; } 2>/dev/null |
        awk '/=>/ && $3 ~ /^\// {print $3} /^\t\// {print $1}' | sort -u
)"
for lib in $libs; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
log "copied $(wc -w <<<"$libs") shared libraries"

# Only the stand-in's modules: the package's __init__ may import pytest and other
# plugin dependencies that the image does not carry.
# (The subpackages' own __init__ files hold docstrings only.)
(cd "$repo" && cp --parents \
    pytest_lambda_context/observe/__init__.py pytest_lambda_context/observe/scope.py \
    pytest_lambda_context/services/__init__.py \
    pytest_lambda_context/services/elasticsearch/__init__.py \
    pytest_lambda_context/services/elasticsearch/embedded.py \
    pytest_lambda_context/services/elasticsearch/store.py \
    "$root/app/")
printf '"""pytest-lambda-context: the embedded Elasticsearch stand-in only (container image)."""\n' \
    >"$root/app/pytest_lambda_context/__init__.py"

tar -C "$root" --owner=0 --group=0 --numeric-owner -cf "$stage/rootfs.tar" .
cat >"$stage/Dockerfile" <<EOF
FROM scratch
ADD rootfs.tar /
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Fails the build now rather than the first test run later.
RUN ["$exe", "-c", "import pytest_lambda_context.services.elasticsearch.embedded"]
EXPOSE 9200
# As PID 1, Python ignores SIGTERM unless it installs a handler; SIGINT it always
# handles, so docker stop is prompt instead of waiting 10 s for SIGKILL.
STOPSIGNAL SIGINT
ENTRYPOINT ["$exe", "-m", "pytest_lambda_context.services.elasticsearch.embedded", "--host", "0.0.0.0", "--port", "9200"]
EOF
log "building $image ($(du -sh "$stage/rootfs.tar" | cut -f1) root file system)"
DOCKER_BUILDKIT=0 docker build -q -t "$image" "$stage" >&2
log "built $image"

if [ "$check" = 1 ]; then
    cid="$(docker run -d --rm -p 127.0.0.1::9200 "$image")"
    trap 'docker stop "$cid" >/dev/null 2>&1 || true; rm -rf "$stage"' EXIT
    port="$(docker port "$cid" 9200/tcp | head -n 1 | sed 's/.*://')"
    "$python" - "$port" <<'EOF'
import json, sys, time, urllib.request
deadline = time.monotonic() + 15
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2) as response:
            assert response.headers["X-Elastic-Product"] == "Elasticsearch"
            print(f"es-image: GET / -> {response.status}, version "
                  f"{json.load(response)['version']['number']}", file=sys.stderr)
            break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
EOF
    started="$(date +%s%N)"
    docker stop "$cid" >/dev/null
    log "container answered GET / and stopped in $(( ($(date +%s%N) - started) / 1000000 )) ms"
fi
