# Shared by `up` and `down`. Sourced, not run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Pids, configs and data live here (a temp dir); jars are cached apart from it.
STATE="${PARLEY_INFRA_DIR:-${TMPDIR:-/tmp}/parley-infra}"
CACHE="${PARLEY_INFRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parley-infra}"
KAFKA_PORT="${PARLEY_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${PARLEY_KAFKA_CONTROLLER_PORT:-9093}"
CASSANDRA_PORT="${PARLEY_CASSANDRA_PORT:-9042}"
CASSANDRA_STORAGE_PORT="${PARLEY_CASSANDRA_STORAGE_PORT:-7000}"

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

services_from_args() {
    if [ $# -eq 0 ] || [ "$1" = all ]; then
        echo "kafka cassandra"
        return
    fi
    for s in "$@"; do
        case "$s" in
            kafka | cassandra) echo "$s" ;;
            *) die "unknown service '$s' (expected kafka, cassandra or all)" ;;
        esac
    done
}

port_of() { if [ "$1" = kafka ]; then echo "$KAFKA_PORT"; else echo "$CASSANDRA_PORT"; fi; }
pid_file() { echo "$STATE/$1.pid"; }

# The pid of a running service we started, or nothing.
running_pid() {
    local f
    f="$(pid_file "$1")"
    [ -f "$f" ] || return 0
    local pid
    pid="$(cat "$f")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
