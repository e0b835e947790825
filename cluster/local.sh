#!/usr/bin/env bash
# A real multi-node Ray cluster on this one machine, for trying job submission and for the tests.
#
#   cluster/local.sh up [--workers N] [--cpus-per-worker C] [--dir DIR] [--port P] [--dashboard-port D]
#   cluster/local.sh stop-worker I      # end worker node I alone (its raylet and workers), mid-run
#   cluster/local.sh status
#   cluster/local.sh down               # end every process it started; nothing else on the machine
#
# The head (0 CPUs: it runs job drivers, GCS and the dashboard) and N worker nodes are separate
# `ray start --block` processes, each in its own process group and temp dir, so one node can be
# stopped alone (`ray stop` would stop every Ray on the machine, a test session's included).
# Token authentication stays on (Ray 2.60 default); the dashboard listens on 127.0.0.1 only.
# Submit with:  musicgan submit train ... --address http://127.0.0.1:D
# DIR/shared is the shared storage every node sees (data, runs, registry).
set -euo pipefail

cmd="${1:-}"; shift || true
DIR="${MUSICGAN_CLUSTER_DIR:-/tmp/musicgan-cluster}"
WORKERS=2; CPUS=1; PORT=6390; DPORT=8265
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS="$2"; shift 2;;
    --cpus-per-worker) CPUS="$2"; shift 2;;
    --dir) DIR="$2"; shift 2;;
    --port) PORT="$2"; shift 2;;
    --dashboard-port) DPORT="$2"; shift 2;;
    -h|--help) sed -n '2,15p' "$0"; exit 0;;
    *) if [ "$cmd" = "stop-worker" ] && [ -z "${WORKER_ID:-}" ]; then WORKER_ID="$1"; shift; else
         echo "local.sh: unknown argument $1" >&2; exit 2; fi;;
  esac
done

RAY="${RAY:-$(dirname "$0")/../.venv/bin/ray}"
[ -x "$RAY" ] || RAY="$(command -v ray)"
# Job drivers start from the head's environment: the `musicgan` next to this `ray` must be on PATH.
export PATH="$(cd "$(dirname "$RAY")" && pwd):$PATH"

wait_nodes() {  # wait until the cluster reports $1 alive nodes
  local want="$1" deadline=$((SECONDS + 90))
  while [ $SECONDS -lt $deadline ]; do
    n=$(RAY_AUTH_MODE=token "$RAY" status --address "127.0.0.1:$PORT" 2>/dev/null | grep -c "^ 1 node_" || true)
    [ "$n" -ge "$want" ] && return 0
    sleep 1
  done
  echo "local.sh: only $n of $want nodes came up; see $DIR/logs" >&2
  return 1
}

start_node() {  # name, then ray start arguments
  local name="$1"; shift
  mkdir -p "$DIR/logs" "$DIR/t/$name"
  setsid "$RAY" start --block --temp-dir="$DIR/t/$name" --disable-usage-stats "$@" >"$DIR/logs/$name.log" 2>&1 &
  echo $! >"$DIR/$name.pid"
}

stop_node() {  # name: end its whole process group (ray start --block, raylet, workers)
  local pidfile="$DIR/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "$cmd" in
  up)
    if [ -f "$DIR/head.pid" ] && kill -0 "$(cat "$DIR/head.pid")" 2>/dev/null; then
      echo "local.sh: a cluster is already up in $DIR (run down first)" >&2; exit 2
    fi
    mkdir -p "$DIR/shared"
    echo "$PORT $DPORT $WORKERS" >"$DIR/ports"
    start_node head --head --port="$PORT" --dashboard-host=127.0.0.1 --dashboard-port="$DPORT" --num-cpus=0
    wait_nodes 1
    for i in $(seq 1 "$WORKERS"); do
      RAY_AUTH_MODE=token start_node "w$i" --address="127.0.0.1:$PORT" --num-cpus="$CPUS" \
        --resources="{\"node_w$i\": 1}"
    done
    wait_nodes $((WORKERS + 1))
    echo "cluster up: head + $WORKERS workers x $CPUS CPU"
    echo "  dashboard / jobs  http://127.0.0.1:$DPORT   (token: ~/.ray/auth_token)"
    echo "  shared storage    $DIR/shared"
    echo "  submit            musicgan submit train --data ... --address http://127.0.0.1:$DPORT --follow"
    echo "  tear down         cluster/local.sh down --dir $DIR"
    ;;
  stop-worker)
    [ -n "${WORKER_ID:-}" ] || { echo "local.sh: stop-worker needs a worker number" >&2; exit 2; }
    stop_node "w$WORKER_ID"
    echo "worker node w$WORKER_ID stopped"
    ;;
  status)
    [ -f "$DIR/ports" ] && read -r PORT DPORT WORKERS <"$DIR/ports"
    RAY_AUTH_MODE=token "$RAY" status --address "127.0.0.1:$PORT"
    ;;
  down)
    for f in "$DIR"/w*.pid; do [ -e "$f" ] && stop_node "$(basename "$f" .pid)"; done
    stop_node head
    # processes of the nodes may take a moment to exit after their raylet; what is still running
    # from this cluster's temp dirs after that is a leak: end it and say so
    for _ in $(seq 30); do pgrep -f -- "$DIR/t/" >/dev/null || break; sleep 0.5; done
    left=$(pgrep -f -- "$DIR/t/" || true)
    if [ -n "$left" ]; then echo "local.sh: ending stray processes $left"; kill -KILL $left 2>/dev/null || true; fi
    rm -f "$DIR/ports"
    echo "cluster down"
    ;;
  *)
    sed -n '2,15p' "$0"; exit 2;;
esac
