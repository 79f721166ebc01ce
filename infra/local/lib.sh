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
# The secured pair (`--secure`): their own ports and data, beside the plain ones.
KAFKA_SECURE_PORT="${PARLEY_KAFKA_SECURE_PORT:-9192}"
KAFKA_SECURE_CONTROLLER_PORT="${PARLEY_KAFKA_SECURE_CONTROLLER_PORT:-9193}"
CASSANDRA_SECURE_PORT="${PARLEY_CASSANDRA_SECURE_PORT:-9142}"
CASSANDRA_SECURE_STORAGE_PORT="${PARLEY_CASSANDRA_SECURE_STORAGE_PORT:-7100}"
# The replicated cluster (`--replicated`): node N of each listens on
# 127.0.0.N, on ports neither pair uses; its state is under $REPLICATED.
REPLICATED="$STATE/replicated"
REPLICATED_NODES="1 2 3"
REPLICATED_KAFKA_PORT="${PARLEY_REPLICATED_KAFKA_PORT:-9292}"
REPLICATED_KAFKA_CONTROLLER_PORT="${PARLEY_REPLICATED_KAFKA_CONTROLLER_PORT:-9293}"
REPLICATED_CASSANDRA_PORT="${PARLEY_REPLICATED_CASSANDRA_PORT:-9242}"
REPLICATED_CASSANDRA_STORAGE_PORT="${PARLEY_REPLICATED_CASSANDRA_STORAGE_PORT:-7200}"
# The PARLEY_* settings that reach it (the fault suite reads them there).
REPLICATED_ENV="$REPLICATED/replicated.env"
# Certificates and passwords of the secured pair, and the PARLEY_* settings
# that reach it (tests read them from there).
CERTS="$STATE/secure-certs"
SECURE_ENV="$STATE/secure.env"

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# `all` (or nothing) is the plain pair every test uses; `--secure` the
# secured pair.
services_from_args() {
    if [ $# -eq 0 ]; then
        echo "kafka cassandra"
        return
    fi
    for s in "$@"; do
        case "$s" in
            all) echo "kafka cassandra" ;;
            --secure) echo "kafka-secure cassandra-secure" ;;
            kafka | cassandra | kafka-secure | cassandra-secure) echo "$s" ;;
            *) die "unknown service '$s' (expected kafka, cassandra, all, --secure, kafka-secure or cassandra-secure)" ;;
        esac
    done
}

port_of() {
    case "$1" in
        kafka) echo "$KAFKA_PORT" ;;
        cassandra) echo "$CASSANDRA_PORT" ;;
        kafka-secure) echo "$KAFKA_SECURE_PORT" ;;
        cassandra-secure) echo "$CASSANDRA_SECURE_PORT" ;;
    esac
}
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
