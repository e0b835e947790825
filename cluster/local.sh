#!/usr/bin/env bash
# A real multi-node Ray cluster on this one machine, for trying job submission and for the tests.
#
#   cluster/local.sh up [--workers N] [--cpus-per-worker C] [--dir DIR] [--port P] [--dashboard-port D]
#   cluster/local.sh stop-worker I      # end worker node I alone (its raylet and workers), mid-run
#   cluster/local.sh status
#   cluster/local.sh down               # end every process it started; nothing else on the machine
#
# A node's pid file holds its pid and start time, and every process started here carries a marker
# (MUSICGAN_CLUSTER_ID) in its environment: down and stop-worker end a process only when both say
# it is this cluster's, never by a name or command-line pattern, never by a stale pid alone.
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
    -h|--help) sed -n '2,19p' "$0"; exit 0;;
    *) if [ "$cmd" = "stop-worker" ] && [ -z "${WORKER_ID:-}" ]; then WORKER_ID="$1"; shift; else
         echo "local.sh: unknown argument $1" >&2; exit 2; fi;;
  esac
done

RAY="${RAY:-$(dirname "$0")/../.venv/bin/ray}"
[ -x "$RAY" ] || RAY="$(command -v ray)"
# Job drivers start from the head's environment: the `musicgan` next to this `ray` must be on PATH.
export PATH="$(cd "$(dirname "$RAY")" && pwd):$PATH"

free_port() {  # a loopback port nothing listens on now
  "$(dirname "$RAY")/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
    2>/dev/null || python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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

proc_start() {  # when process $1 started (clock ticks since boot), empty if there is no such process
  if [ -r "/proc/$1/stat" ]; then
    # field 22 of /proc/PID/stat; the command name (field 2) may hold spaces, so count after its ")"
    { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $20}'; } 2>/dev/null || true
  else
    ps -o lstart= -p "$1" 2>/dev/null | tr -s ' ' || true
  fi
}

cluster_id() {  # the marker every process `up` started carries in its environment (children inherit it)
  [ -f "$DIR/cluster-id" ] && cat "$DIR/cluster-id" || true
}

marked() {  # pids whose environment carries this cluster's marker: what `up` started, and their children
  local id; id=$(cluster_id)
  [ -n "$id" ] || return 0
  grep -lzxF "MUSICGAN_CLUSTER_ID=$id" /proc/[0-9]*/environ 2>/dev/null \
    | sed -e 's|^/proc/||' -e 's|/environ$||' | grep -vx -e "$$" -e "$PPID" || true
}

start_node() {  # name, then ray start arguments
  local name="$1"; shift
  mkdir -p "$DIR/logs" "$DIR/t/$name"
  MUSICGAN_CLUSTER_ID="$(cluster_id)" setsid "$RAY" start --block --temp-dir="$DIR/t/$name" --disable-usage-stats "$@" \
    >"$DIR/logs/$name.log" 2>&1 &
  local pid=$!
  # pid AND start time: a pid file outliving its process must never name a stranger that got the pid
  echo "$pid $(proc_start "$pid")" >"$DIR/$name.pid.tmp" && mv "$DIR/$name.pid.tmp" "$DIR/$name.pid"
}

node_pid() {  # the pid of node $1 if that very process (pid and start time) still runs, else nothing
  local pidfile="$DIR/$1.pid" pid="" start=""
  [ -f "$pidfile" ] || return 0
  read -r pid start <"$pidfile" || true
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -n "$start" ] || return 0
  [ "$(proc_start "$pid")" = "$start" ] && echo "$pid" || true
}

stop_node() {  # name: end its whole process group (ray start --block, raylet, workers), if it is ours
  local pidfile="$DIR/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(node_pid "$1")
  if [ -n "$pid" ]; then
    # the leader is the process we started, so its group (setsid: id = its pid) is the node's
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  else
    echo "local.sh: $pidfile names no process this script started (it exited, or the pid now belongs to" \
         "another process); killing nothing by it" >&2
  fi
  rm -f "$pidfile"
}

case "$cmd" in
  up)
    if [ -n "$(node_pid head)" ]; then
      echo "local.sh: a cluster is already up in $DIR (run down first)" >&2; exit 2
    fi
    mkdir -p "$DIR/shared"
    echo "$(date +%s%N)-$$-$RANDOM$RANDOM" >"$DIR/cluster-id"
    echo "$PORT $DPORT $WORKERS" >"$DIR/ports"
    # Each node's dashboard agent on a free port: Ray's default (52365) is taken by any other Ray on
    # the machine (a test session's, a notebook's), and a head without its agent takes no jobs.
    start_node head --head --port="$PORT" --dashboard-host=127.0.0.1 --dashboard-port="$DPORT" --num-cpus=0 \
      --dashboard-agent-listen-port="$(free_port)"
    wait_nodes 1
    for i in $(seq 1 "$WORKERS"); do
      RAY_AUTH_MODE=token start_node "w$i" --address="127.0.0.1:$PORT" --num-cpus="$CPUS" \
        --resources="{\"node_w$i\": 1}" --dashboard-agent-listen-port="$(free_port)"
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
    # processes of the nodes may take a moment to exit after their raylet. What still runs after
    # that with this cluster's marker in its environment (a child that left its process group) is
    # a leak: end it and say so. Nothing is picked by name or command line.
    for _ in $(seq 30); do [ -z "$(marked)" ] && break; sleep 0.5; done
    left=$(marked | tr '\n' ' ')
    if [ -n "${left// /}" ]; then echo "local.sh: ending stray processes $left"; kill -KILL $left 2>/dev/null || true; fi
    rm -f "$DIR/ports" "$DIR/cluster-id"
    echo "cluster down"
    ;;
  *)
    sed -n '2,19p' "$0"; exit 2;;
esac
