# Sourced by the scripts/bench-* scripts that need more sockets than one
# process may hold (~19,900 open files on the benchmark box): several
# `parley serve ws-push` beside a running `parley dev`, on 127.0.0.1:8084..
#
#   write_fleet FILE WORK COUNT PARLEY DATA_DIR SECRET [ws-push flags...]
#
# writes to FILE the shell functions `start_all` (start COUNT processes,
# their logs in WORK/ws-N.log and pids in WORK/ws-N.pid), `ready_all`
# (wait for every /readyz; fails with the logs' tails) and `stop_all`
# (SIGTERM, then wait until each has exited). It is a file rather than
# functions here because a load generator's restart command runs it again
# from a shell of its own.
write_fleet() {
    local file=$1 work=$2 count=$3 parley=$4 data_dir=$5 secret=$6
    shift 6
    local last=$((count - 1)) a
    {
        echo "start_all() {"
        echo "    for i in \$(seq 0 $last); do"
        printf '        %q serve ws-push --data-dir %q --jwt-secret %q' "$parley" "$data_dir" "$secret"
        for a in "$@"; do printf ' %q' "$a"; done
        printf ' --listen "127.0.0.1:$((8084 + i))" >>"%s/ws-$i.log" 2>&1 &\n' "$work"
        printf '        echo $! >"%s/ws-$i.pid"\n' "$work"
        echo "    done"
        echo "}"
        echo "ready_all() {"
        echo "    for i in \$(seq 0 $last); do"
        echo "        r=1"
        echo "        for _ in \$(seq 400); do"
        echo "            curl -sf \"http://127.0.0.1:\$((8084 + i))/readyz\" >/dev/null && { r=0; break; }"
        echo "            sleep 0.05"
        echo "        done"
        echo "        [ \$r = 0 ] || { echo \"ws-push \$i is not ready:\" >&2; tail -n 20 \"$work/ws-\$i.log\" >&2; return 1; }"
        echo "    done"
        echo "}"
        echo "stop_all() {"
        echo "    pids=\$(cat '$work'/ws-*.pid 2>/dev/null || true)"
        echo "    [ -n \"\$pids\" ] || return 0"
        echo "    kill -TERM \$pids 2>/dev/null || true"
        echo "    for p in \$pids; do while kill -0 \"\$p\" 2>/dev/null; do sleep 0.05; done; done"
        echo "}"
    } >"$file"
}
