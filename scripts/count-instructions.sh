#!/usr/bin/env bash
# Instructions each serving process executes per request, counted by valgrind's
# callgrind: unlike latency on a shared VM, the count barely moves between runs, so it
# shows what a change to the request path costs or saves.
#
# Registry, trainer, worker and router run as separate processes on a real etcd (as in
# a cluster), with the bare proxy (`modelplane bench-echo --forward-to WORKER`) beside
# the router as the floor of one more hop. One process at a time runs under callgrind
# while `modelplane bench` sends logistic30 requests at concurrency 1; the counts are
# zeroed after a warm-up and divided by the requests measured. Prints one markdown row
# per measurement: the router, the bare proxy, and the worker answering unary calls
# (a client directly) and a stream (the router's worker link, through the proxy). What
# the process spends while idle for as long is subtracted (last column).
#
#   scripts/count-instructions.sh [SECONDS]      (default 5; needs etcd and valgrind)
#
# MODELPLANE_BIN=path counts another build (e.g. a copy of an older one) instead of
# building this tree.
#
# User-space instructions only: the kernel's share (sockets, wake-ups) is not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
for tool in etcd valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install etcd-server valgrind)" >&2; exit 1; }
done
if [ -n "${MODELPLANE_BIN:-}" ]; then
  bin="$MODELPLANE_BIN"
else
  cargo build --release --quiet -p modelplane
  bin="$PWD/target/release/modelplane"
fi
source scripts/lib/processes.sh
start_etcd "$work/etcd"
client=$ETCD_CLIENT

# start NAME [callgrind] ARGS...: starts one process (under callgrind when asked), sets
# NAME_ADDR to its address and NAME_PID to its pid.
start() {
  local name="$1"; shift
  local wrap=()
  if [ "$1" = callgrind ]; then
    shift
    wrap=(valgrind --tool=callgrind --callgrind-out-file="$work/$name.callgrind")
  fi
  "${wrap[@]}" "$bin" "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  printf -v "${name}_PID" '%s' "$!"
  printf -v "${name}_ADDR" '%s' "$(wait_listening "$work/$name.out" 1 | cut -d' ' -f2)"
}

# count LABEL PID TARGET: instructions per request of PID while TARGET is benchmarked.
count() {
  local label="$1" pid="$2" target="$3"
  "$bin" bench --duration-secs 2 --warmup-secs 1 --concurrency 1 --target "$target" --model logistic30 --label warm-up >/dev/null
  callgrind_control --zero "$pid" >/dev/null 2>&1
  local row
  row=$("$bin" bench --duration-secs "$seconds" --warmup-secs 0 --concurrency 1 --target "$target" \
    --model logistic30 --label "$label" | tail -n 1)
  callgrind_control --dump "$pid" >/dev/null 2>&1
  sleep 1
  local total idle rate requests
  total=$(dumped_total)
  # What the process spends while idle for as long (lease keep-alives, watches, timers)
  # is not the requests': subtracted, so a slower run (fewer requests in the window)
  # does not look costlier per request.
  callgrind_control --zero "$pid" >/dev/null 2>&1
  sleep "$seconds"
  callgrind_control --dump "$pid" >/dev/null 2>&1
  sleep 1
  idle=$(dumped_total)
  rate=$(echo "$row" | awk -F'|' '{ gsub(" ", "", $5); print $5 }')
  requests=$((rate * seconds))
  echo "| $label | $requests | $(((total - idle) / requests)) | $((idle / seconds)) |"
}

# The instruction total of the newest callgrind dump, which is then removed.
dumped_total() {
  local dump
  dump=$(ls -t "$work"/*.callgrind* | head -1)
  callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
  rm -f "$work"/*.callgrind*
}

# Every call needs a key: the registry stores an admin key, each role makes its own.
start REGISTRY registry --listen 127.0.0.1:0 --store "$client" --blob-dir "$work/blobs" --admin-key-file "$work/admin.key"
start TRAINER trainer --listen 127.0.0.1:0 --etcd "$client" --registry "$REGISTRY_ADDR" --id count-trainer \
  --api-key-file "$work/keys/trainer.key"
start WORKER callgrind worker --listen 127.0.0.1:0 --etcd "$client" --registry "$REGISTRY_ADDR" --id count-worker \
  --cache-dir "$work/cache" --api-key-file "$work/keys/worker.key"
start ROUTER callgrind router --listen 127.0.0.1:0 --store "$client" --http-listen "" --api-key-file "$work/keys/router.key"
# The proxy, the CLI and `bench` call as the admin.
export MODELPLANE_API_KEY_FILE="$work/admin.key"
start PROXY callgrind bench-echo --features 30 --forward-to "$WORKER_ADDR"
export MODELPLANE_REGISTRY=$REGISTRY_ADDR MODELPLANE_TRAINER=$TRAINER_ADDR MODELPLANE_ROUTER=$ROUTER_ADDR

python3 - "$work/wide.csv" <<'EOF'
import random, sys
rng = random.Random(3)
with open(sys.argv[1], "w") as f:
    f.write(",".join(f"x{i}" for i in range(30)) + ",label\n")
    for _ in range(500):
        xs = [rng.gauss(0, 1) for _ in range(30)]
        f.write(",".join(f"{x:.4f}" for x in xs) + f",{int(sum(xs[:5]) > 0)}\n")
EOF
(cd "$work" && "$bin" datasets upload wide.csv >/dev/null)
"$bin" train logistic30 --dataset wide --target label --kind logistic --epochs 2 --output json >/dev/null
"$bin" deploy logistic30 --version 1 --wait 120 >/dev/null

echo "| process (logistic30, concurrency 1) | requests counted | instructions per request | idle instructions per second |"
echo "| --- | --- | --- | --- |"
count "router" "$ROUTER_PID" "$ROUTER_ADDR"
count "bare proxy" "$PROXY_PID" "$PROXY_ADDR"
count "worker, unary calls" "$WORKER_PID" "$WORKER_ADDR"
count "worker, on the router's stream link" "$WORKER_PID" "$PROXY_ADDR"
