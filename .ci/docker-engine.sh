#!/usr/bin/env bash
# Start (or stop) a private Docker engine for CI and local runs on a machine without one.
#
#   eval "$(.ci/docker-engine.sh start)"   # installs docker.io if dockerd is missing,
#                                          # starts dockerd, prints export lines
#   .ci/docker-engine.sh status
#   .ci/docker-engine.sh stop [DIR]        # DIR defaults to $PLC_DOCKER_ENGINE_DIR
#
# Or source it and call docker_engine_start / docker_engine_stop.
#
# The daemon gets its own data root, exec root, pid file and socket under a temp dir,
# so it never touches a system engine's state. Only the export lines go to stdout
# (they are meant to be eval'd); progress and errors go to stderr.

docker_engine_log() { printf 'docker-engine: %s\n' "$*" >&2; }

docker_engine_install() {
    command -v dockerd >/dev/null 2>&1 && return 0
    docker_engine_log "dockerd not found; installing docker.io with apt-get"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { docker_engine_log "need root or sudo to install docker.io"; return 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker.io >&2
}

docker_engine_start() {
    docker_engine_install || return 1
    # Short path: dockerd and containerd put unix sockets under the exec root.
    local dir
    dir="$(mktemp -d /tmp/plc-docker.XXXXXX)" || return 1
    mkdir -p "$dir/data" "$dir/exec"
    # setsid: the daemon must outlive this script and the shell job that ran it.
    setsid dockerd \
        --data-root "$dir/data" \
        --exec-root "$dir/exec" \
        --pidfile "$dir/dockerd.pid" \
        -H "unix://$dir/docker.sock" \
        --storage-driver=overlay2 \
        >"$dir/dockerd.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 300); do
        if DOCKER_HOST="unix://$dir/docker.sock" docker info >/dev/null 2>&1; then
            docker_engine_log "ready after $((i / 10)).$((i % 10)) s (state in $dir)"
            printf 'export DOCKER_HOST=%q\n' "unix://$dir/docker.sock"
            printf 'export PLC_DOCKER_ENGINE_DIR=%q\n' "$dir"
            # No registry is reachable: testcontainers' Ryuk image cannot be pulled, and
            # its in-a-container guess (from /.dockerenv) would pick the bridge gateway.
            printf 'export TESTCONTAINERS_RYUK_DISABLED=true\n'
            printf 'export TESTCONTAINERS_CONNECTION_MODE=docker_host\n'
            return 0
        fi
        if [ -f "$dir/dockerd.pid" ] && ! kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    docker_engine_log "dockerd did not become ready; last lines of $dir/dockerd.log:"
    tail -n 30 "$dir/dockerd.log" >&2
    docker_engine_stop "$dir"
    return 1
}

docker_engine_stop() {
    local dir="${1:-${PLC_DOCKER_ENGINE_DIR:-}}"
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then
        docker_engine_log "no engine directory given (argument or PLC_DOCKER_ENGINE_DIR)"
        return 1
    fi
    if [ -f "$dir/dockerd.pid" ]; then
        local pid i
        pid="$(cat "$dir/dockerd.pid")"
        # Only this engine's own daemon, by its pid.
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 1 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            docker_engine_log "dockerd $pid still running after 20 s; leaving $dir in place"
            return 1
        fi
        docker_engine_log "dockerd $pid stopped"
    fi
    # A clean shutdown unmounts everything; refuse to delete through a stale mount.
    if grep -q " $dir/" /proc/mounts; then
        docker_engine_log "mounts remain under $dir; not removing it"
        return 1
    fi
    rm -rf "$dir"
}

docker_engine_status() {
    local dir="${1:-${PLC_DOCKER_ENGINE_DIR:-}}"
    [ -n "$dir" ] && DOCKER_HOST="unix://$dir/docker.sock" docker info --format \
        'Docker {{.ServerVersion}} running, {{.Containers}} containers, {{.Images}} images'
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case "${1:-}" in
        start) docker_engine_start ;;
        stop) docker_engine_stop "${2:-}" ;;
        status) docker_engine_status "${2:-}" ;;
        *)
            echo "usage: eval \"\$($0 start)\" | $0 stop [DIR] | $0 status [DIR]" >&2
            exit 2
            ;;
    esac
fi
