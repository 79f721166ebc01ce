# The replicated cluster of `up --replicated` and `down --replicated`:
# services `replicated/kafka-N` and `replicated/cassandra-N`, N in 1..3, so
# their pids, configs and data live under $STATE/replicated. Sourced by `up`
# (after its functions) and by `down`.

replicated_services() {
    local n
    for n in $REPLICATED_NODES; do echo "replicated/kafka-$n"; done
    for n in $REPLICATED_NODES; do echo "replicated/cassandra-$n"; done
}

node_of() { echo "${1##*-}"; }

start_replicated_kafka() {
    local n="$1"
    [ -n "$(running_pid "replicated/kafka-$n")" ] && return 0
    (exec 3<>"/dev/tcp/127.0.0.$n/$REPLICATED_KAFKA_PORT") 2>/dev/null &&
        die "127.0.0.$n:$REPLICATED_KAFKA_PORT is taken by another process"
    HOST="127.0.0.$n" NODE="$n" KAFKA_CLUSTER_ID="$(cat "$REPLICATED/kafka-cluster-id")" \
        start_kafka "replicated/kafka-$n" kafka-replicated.properties \
        "$REPLICATED_KAFKA_PORT" "$REPLICATED_KAFKA_CONTROLLER_PORT" 384m
}

# The plain configuration on node N's address, joining the first node; the
# first cluster starts without streaming (auto_bootstrap: false), so three
# empty nodes are up in seconds rather than minutes.
start_replicated_cassandra() {
    local n="$1" yaml="$REPLICATED/cassandra.yaml.in"
    [ -n "$(running_pid "replicated/cassandra-$n")" ] && return 0
    (exec 3<>"/dev/tcp/127.0.0.$n/$REPLICATED_CASSANDRA_PORT") 2>/dev/null &&
        die "127.0.0.$n:$REPLICATED_CASSANDRA_PORT is taken by another process"
    {
        sed -e 's/^cluster_name: .*/cluster_name: parley-local-replicated/' \
            -e 's/^listen_address: .*/listen_address: @HOST@/' \
            -e 's/^rpc_address: .*/rpc_address: @HOST@/' \
            "$HERE/conf/cassandra.yaml"
        cat <<'YAML'
auto_bootstrap: false
# A node that was down gets the writes it missed from the others' hints.
hinted_handoff_enabled: true
max_hint_window: 1h
YAML
    } >"$yaml"
    HOST="127.0.0.$n" CASSANDRA_EXTRA_OPTS="-Dcassandra.ring_delay_ms=1000" \
        start_cassandra "replicated/cassandra-$n" "$yaml" \
        "$REPLICATED_CASSANDRA_PORT" "$REPLICATED_CASSANDRA_STORAGE_PORT" 640m
}

# ready SVC: node N answers, and sees the whole cluster (three brokers in
# its metadata; two peers in Cassandra's system tables).
replicated_ready() {
    local svc="$1" n
    n="$(node_of "$svc")"
    case "$svc" in
        replicated/kafka-*)
            python3 "$HERE/probe.py" kafka 127.0.0.$n "$REPLICATED_KAFKA_PORT" 3 ;;
        replicated/cassandra-*)
            python3 "$HERE/probe.py" cassandra 127.0.0.$n "$REPLICATED_CASSANDRA_PORT" 3 ;;
    esac
}

wait_replicated() {
    local svc="$1" started="$2" deadline
    deadline=$((started + TIMEOUT))
    while ! replicated_ready "$svc" >/dev/null 2>&1; do
        if [ -z "$(running_pid "$svc")" ]; then
            tail -n 40 "$(log_of "$svc")" >&2 || true
            die "$svc exited during start-up (log: $(log_of "$svc"))"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            tail -n 40 "$(log_of "$svc")" >&2 || true
            replicated_ready "$svc" || true
            die "$svc was not ready within ${TIMEOUT}s (log: $(log_of "$svc"))"
        fi
        sleep 1
    done
    say "$svc ready on 127.0.0.$(node_of "$svc") after $(($(date +%s) - started))s"
}

up_replicated() {
    local started n
    started="$(date +%s)"
    mkdir -p "$REPLICATED"
    fetch kafka
    fetch cassandra
    if [ ! -f "$REPLICATED/kafka-cluster-id" ]; then
        java -cp "$CACHE/kafka/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1 \
            >"$REPLICATED/kafka-cluster-id"
    fi
    for n in $REPLICATED_NODES; do start_replicated_kafka "$n"; done
    # Cassandra's first node is the seed the others gossip with: it
    # answers before they start.
    start_replicated_cassandra 1
    if [ -z "$(running_pid replicated/cassandra-2)$(running_pid replicated/cassandra-3)" ]; then
        while ! python3 "$HERE/probe.py" cassandra 127.0.0.1 "$REPLICATED_CASSANDRA_PORT" \
            >/dev/null 2>&1; do
            [ -n "$(running_pid replicated/cassandra-1)" ] ||
                die "replicated/cassandra-1 exited (log: $(log_of replicated/cassandra-1))"
            [ "$(date +%s)" -lt $((started + TIMEOUT)) ] ||
                die "replicated/cassandra-1 did not answer within ${TIMEOUT}s"
            sleep 1
        done
    fi
    for n in 2 3; do start_replicated_cassandra "$n"; done
    for svc in $(replicated_services); do wait_replicated "$svc" "$started"; done
    local brokers="" nodes="" sep=""
    for n in $REPLICATED_NODES; do
        brokers="${brokers}${sep}127.0.0.$n:$REPLICATED_KAFKA_PORT"
        nodes="${nodes}${sep}127.0.0.$n:$REPLICATED_CASSANDRA_PORT"
        sep=,
    done
    cat >"$REPLICATED_ENV" <<ENV
PARLEY_KAFKA_BROKERS=$brokers
PARLEY_KAFKA_REPLICATION=3
PARLEY_SCYLLA_NODES=$nodes
PARLEY_SCYLLA_REPLICATION=3
PARLEY_SCYLLA_CONSISTENCY=local-quorum
PARLEY_SCYLLA_SERIAL_CONSISTENCY=local-serial
ENV
    say "replicated cluster ready after $(($(date +%s) - started))s; settings in $REPLICATED_ENV"
}

# down_replicated KEEP: SIGTERM, then SIGKILL after 30 s; the data goes
# too unless KEEP is true.
down_replicated() {
    local keep="$1" svc pid
    for svc in $(replicated_services); do
        pid="$(running_pid "$svc")"
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    for svc in $(replicated_services); do
        pid="$(running_pid "$svc")"
        if [ -n "$pid" ]; then
            for _ in $(seq 1 60); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            if kill -0 "$pid" 2>/dev/null; then
                say "$svc (pid $pid) ignored SIGTERM for 30s; killing it"
                kill -9 "$pid" 2>/dev/null || true
            fi
            say "$svc stopped"
        fi
        rm -f "$(pid_file "$svc")"
    done
    if [ "$keep" = false ]; then
        rm -rf "${REPLICATED:?}"
    fi
}
