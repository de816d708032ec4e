# Sourced by .ci/run (and usable by hand): a local Ray cluster of one head and two worker nodes, each a
# separate `ray start --block` in its own session, with its own temp dir and resources, on this machine.
#   ray_cluster_start        starts it and exports ZEBRA_TEST_RAY_ADDRESS (127.0.0.1:PORT),
#                            ZEBRA_TEST_RAY_DIR (per node: <dir>/<node>/pid = its process group, log) and
#                            ZEBRA_TEST_RAY_TOKEN_PATH (the cluster's token: a driver needs
#                            RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<it>)
#   ray_cluster_stop         stops it (only the processes this script started; never `ray stop`, which stops
#                            every Ray process of the machine, other people's clusters included)
#   ray_cluster_node_start NODE / ray_cluster_node_stop NODE   one node (w1, w2 or head)
#   ray_cluster_node_kill NODE    kill -9 of a whole node at once, as if its machine died (a test's fault)
#   ray_cluster_node_restart NODE   one node again, with the settings the cluster was started with (a test
#                            that killed a node restores it so)
# The head has no CPUs (triage tasks never run on it, as on a real cluster where the head only schedules);
# each worker has RAY_CI_WORKER_CPUS CPUs and a custom resource `zebra_node_<name>` that tests can target.
# Every port derives from RAY_CI_PORT_BASE and every file lives under RAY_CI_DIR, so two clusters (two CI
# jobs, or CI next to someone's own) coexist on one machine when those two differ.
# Ray registers nodes under the machine's own IP even when told 127.0.0.1 (it replaces loopback addresses)
# and its servers listen on every interface, so the cluster requires its own random token (token
# authentication): nobody else on the machine or the network can run code in it.
RAY_CI_DIR="${RAY_CI_DIR:-/tmp/zebra-ci-ray}"
RAY_CI_PORT_BASE="${RAY_CI_PORT_BASE:-46300}"
RAY_CI_WORKER_CPUS="${RAY_CI_WORKER_CPUS:-1}"
RAY_CI_OBJECT_STORE_BYTES="${RAY_CI_OBJECT_STORE_BYTES:-100000000}"
RAY_CI_REPO="${RAY_CI_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

ray_cluster_bin() {
  if [ -n "${RAY_CI_BIN:-}" ]; then
    echo "$RAY_CI_BIN"
  elif [ -x "$RAY_CI_REPO/.venv/bin/ray" ]; then
    echo "$RAY_CI_REPO/.venv/bin/ray"
  else
    command -v ray
  fi
}

# Index of a node: its ports are RAY_CI_PORT_BASE + 20 * (index + 1) + 0..9, its workers' 100 ports above.
ray_cluster_node_index() {
  case "$1" in
    head) echo 0 ;;
    w1) echo 1 ;;
    w2) echo 2 ;;
    *) echo "ci: unknown Ray node $1 (head, w1 or w2)" >&2; return 1 ;;
  esac
}

ray_cluster_node_start() {
  local node="$1" bin idx p w dir
  bin=$(ray_cluster_bin) || { echo "ci: ray not found (make install, or set RAY_CI_BIN)" >&2; return 1; }
  idx=$(ray_cluster_node_index "$node") || return 1
  p=$((RAY_CI_PORT_BASE + 20 * (idx + 1)))
  w=$((RAY_CI_PORT_BASE + 100 + 100 * idx))
  dir="$RAY_CI_DIR/$node"
  mkdir -p "$dir/tmp"
  local args=(
    --block --disable-usage-stats
    --node-ip-address=127.0.0.1 --temp-dir="$dir/tmp"
    --node-manager-port=$p --object-manager-port=$((p + 1)) --runtime-env-agent-port=$((p + 2))
    --dashboard-agent-grpc-port=$((p + 3)) --dashboard-agent-listen-port=$((p + 4))
    --metrics-export-port=$((p + 5)) --min-worker-port=$w --max-worker-port=$((w + 99))
    --object-store-memory="$RAY_CI_OBJECT_STORE_BYTES"
  )
  if [ "$node" = head ]; then
    args+=(--head --port="$RAY_CI_PORT_BASE" --include-dashboard=false --dashboard-port=$((RAY_CI_PORT_BASE + 1))
      --num-cpus=0 --resources='{"zebra_node_head": 1}')
  else
    args+=(--address="127.0.0.1:$RAY_CI_PORT_BASE" --num-cpus="$RAY_CI_WORKER_CPUS"
      --resources="{\"zebra_node_$node\": 1}")
  fi
  # Its own session: the node's processes (raylet, agents, task workers) form one process group, which
  # ray_cluster_node_stop (or a test simulating a lost machine with kill -9) ends without touching others.
  RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$RAY_CI_DIR/auth_token" \
    setsid "$bin" start "${args[@]}" >"$dir/log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  disown $! 2>/dev/null || true  # stopped by pid later: no job-control "Killed" notices from this shell
}

# The processes of a node: its process group (ray start, raylet, agents) and their descendants (Ray puts each
# task worker in a process group of its own, under the raylet).
ray_cluster_node_pids() {
  ps -eo pid=,ppid=,pgid= | awk -v g="$1" '
    { pid[NR] = $1; ppid[NR] = $2; pg[NR] = $3 }
    END {
      for (i = 1; i <= NR; i++) if (pg[i] == g) keep[pid[i]] = 1
      do {
        changed = 0
        for (i = 1; i <= NR; i++) if (!(pid[i] in keep) && (ppid[i] in keep)) { keep[pid[i]] = 1; changed = 1 }
      } while (changed)
      for (p in keep) print p
    }'
}

# When a process started (clock ticks after boot), empty when it is gone.
ray_cluster_started_at() {
  sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $20 }'
}

# The pid of a node's `ray start` if it is the one this script started (a stale pid file must not stop
# whatever reuses that pid); nothing otherwise.
ray_cluster_node_leader() {
  local dir="$RAY_CI_DIR/$1" pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--temp-dir=$dir/tmp"; then
    echo "$pid"
  fi
}

ray_cluster_node_kill() {
  local leader pids
  leader=$(ray_cluster_node_leader "$1")
  [ -n "$leader" ] || { echo "ci: Ray node $1 is not running" >&2; return 1; }
  # Twice: a worker the raylet forked between listing and killing is caught the second time.
  for _ in 1 2; do
    pids=$(ray_cluster_node_pids "$leader")
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
  done
  return 0
}

ray_cluster_node_stop() {
  local node="$1" dir leader
  dir="$RAY_CI_DIR/$node"
  leader=$(ray_cluster_node_leader "$node")
  if [ -n "$leader" ]; then
    local pids pid
    # Listed first: task workers whose raylet exits are re-parented and no longer found from the group.
    pids=$(ray_cluster_node_pids "$leader")
    local -A started=()
    for pid in $pids; do started[$pid]=$(ray_cluster_started_at "$pid"); done
    # SIGTERM: ray start stops its processes (the raylet its task workers) in order; then kill what is left.
    kill -s TERM -- "-$leader" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 -- "-$leader" 2>/dev/null || break; sleep 0.25; done
    for pid in $pids; do
      # Only the same process (same start time): a pid freed in the meantime may belong to someone else now.
      [ "$(ray_cluster_started_at "$pid")" = "${started[$pid]:-}" ] && kill -9 "$pid" 2>/dev/null || true
    done
  fi
  ray_cluster_kill_leftovers "$dir/tmp"
  rm -f "$dir/pid"
}

# Processes of a node that left its process group (none are known to; a safety net): found by the node's own
# temp dir in their command line, which no other cluster shares.
ray_cluster_kill_leftovers() {
  local tmp="$1" pid
  for pid in $(pgrep -f -- "$tmp" 2>/dev/null); do
    [ "$pid" = "$$" ] || kill -9 "$pid" 2>/dev/null || true
  done
}

ray_cluster_alive_nodes() {
  RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$RAY_CI_DIR/auth_token" \
    "$(dirname "$(ray_cluster_bin)")/python" - "127.0.0.1:$RAY_CI_PORT_BASE" <<'EOF' 2>/dev/null
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(sum(1 for n in ray.nodes() if n["Alive"]))
EOF
}

# Whether every node started here still runs (a node that failed to start stops the wait at once).
ray_cluster_nodes_running() {
  local f
  for f in "$RAY_CI_DIR"/*/pid; do
    [ -f "$f" ] || continue
    kill -0 "$(cat "$f")" 2>/dev/null || return 1
  done
}

ray_cluster_wait_nodes() {
  local want="$1" i n
  for i in $(seq 1 120); do
    n=$(ray_cluster_alive_nodes | tail -n 1)
    [ "$n" = "$want" ] && return 0
    ray_cluster_nodes_running || break
    sleep 1
  done
  echo "ci: the Ray cluster has ${n:-no} live node(s), expected $want; the nodes' logs:" >&2
  tail -n 20 "$RAY_CI_DIR"/*/log >&2 || true
  return 1
}

ray_cluster_start() {
  if [ -z "$(ray_cluster_bin)" ] && [ -f "$RAY_CI_REPO/Makefile" ]; then
    echo "ci: installing the virtual environment for Ray (make install)"
    make -C "$RAY_CI_REPO" -s install
  fi
  ray_cluster_stop
  rm -rf "$RAY_CI_DIR"
  mkdir -p "$RAY_CI_DIR"
  chmod 700 "$RAY_CI_DIR"
  (umask 077 && "$(dirname "$(ray_cluster_bin)")/python" -c 'import secrets; print(secrets.token_hex(32), end="")' \
    >"$RAY_CI_DIR/auth_token")
  ray_cluster_node_start head || return 1
  ray_cluster_wait_nodes 1 || { ray_cluster_stop; return 1; }
  ray_cluster_node_start w1 && ray_cluster_node_start w2 || { ray_cluster_stop; return 1; }
  ray_cluster_wait_nodes 3 || { ray_cluster_stop; return 1; }
  # What a later ray_cluster_node_restart (from another shell, e.g. a test) needs to start a node the same way.
  declare -p RAY_CI_PORT_BASE RAY_CI_WORKER_CPUS RAY_CI_OBJECT_STORE_BYTES >"$RAY_CI_DIR/settings"
  echo "RAY_CI_BIN=$(printf %q "$(ray_cluster_bin)")" >>"$RAY_CI_DIR/settings"
  export ZEBRA_TEST_RAY_ADDRESS="127.0.0.1:$RAY_CI_PORT_BASE"
  export ZEBRA_TEST_RAY_DIR="$RAY_CI_DIR"
  export ZEBRA_TEST_RAY_TOKEN_PATH="$RAY_CI_DIR/auth_token"
  echo "ci: Ray cluster ready at $ZEBRA_TEST_RAY_ADDRESS (head + 2 workers, $RAY_CI_WORKER_CPUS CPU each)"
}

ray_cluster_stop() {
  # The workers together (each may take seconds to stop), then the head they report to.
  local w1 w2
  ray_cluster_node_stop w1 &
  w1=$!
  ray_cluster_node_stop w2 &
  w2=$!
  wait "$w1" "$w2" || true  # only these two: the calling shell may have other jobs (Orthanc in .ci/run)
  ray_cluster_node_stop head
}

ray_cluster_node_restart() {
  local node="$1"
  # shellcheck disable=SC1091
  [ -f "$RAY_CI_DIR/settings" ] && source "$RAY_CI_DIR/settings"
  ray_cluster_node_stop "$node"
  ray_cluster_node_start "$node"
}
