#!/usr/bin/env bash
# Serving latency and throughput: the echo floor, a worker directly, and the router in
# front of it, for a 30-feature logistic model and a 64-input MLP, at concurrency 1, 16
# and 64; the router again with its worker reached over loopback gRPC as in a cluster
# (`up --router-via-network`) rather than in process, and the echo server behind a bare
# proxy (the floor of that extra hop); router and worker as separate processes on etcd
# (when etcd is installed), with a bare proxy in front of that worker beside the router;
# then MLPs of growing width at
# concurrency 64 with dynamic batching on and off (in separate `up`s, and taking turns
# in one `up` by redeploying with batching off), and the same for an imported ONNX MLP
# (when a Python with `onnx` is at hand: the interop venv `./scripts/test.sh` makes, or
# the system's). Release build, `modelplane up` on the embedded store; every number comes
# from `modelplane bench`.
#
#   scripts/bench-serving.sh [SECONDS_PER_RUN]      (default 5; prints markdown tables)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
seconds="${1:-5}"
cargo build --release --quiet -p modelplane
bin="$PWD/target/release/modelplane"
source scripts/lib/processes.sh

# start_up NAME [worker flags...]: runs `modelplane up`, sets REGISTRY TRAINER WORKER ROUTER.
start_up() {
  local name="$1"; shift
  "$bin" up --data-dir "$work/data" --grpc-port 0 --http-port 0 --registry-port 0 --trainer-port 0 --worker-port 0 "$@" \
    >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  UP_PID=$!
  while read -r role addr; do
    case "$role" in registry) REGISTRY=$addr ;; trainer) TRAINER=$addr ;; worker) WORKER=$addr ;; router) ROUTER=$addr ;; esac
  done < <(wait_listening "$work/$name.out" 5)
  # The CLI finds the admin key `up` made in its data dir.
  export MODELPLANE_REGISTRY=$REGISTRY MODELPLANE_TRAINER=$TRAINER MODELPLANE_ROUTER=$ROUTER MODELPLANE_DATA_DIR="$work/data"
}

python3 - "$work" <<'EOF'
import random, sys
rng = random.Random(3)
with open(f"{sys.argv[1]}/wide.csv", "w") as f:
    f.write(",".join(f"x{i}" for i in range(30)) + ",label\n")
    for _ in range(2000):
        xs = [rng.gauss(0, 1) for _ in range(30)]
        f.write(",".join(f"{x:.4f}" for x in xs) + f",{int(sum(xs[:5]) > 0)}\n")
with open(f"{sys.argv[1]}/mlp.csv", "w") as f:
    f.write(",".join(f"x{i}" for i in range(64)) + ",label\n")
    for _ in range(2000):
        xs = [rng.gauss(0, 1) for _ in range(64)]
        f.write(",".join(f"{x:.4f}" for x in xs) + f",{int(xs[0] * xs[1] > 0) + 2 * int(xs[2] > 0)}\n")
EOF

# Uploads the data sets, trains and deploys logistic30 and mlp64 on the current cluster.
train_and_deploy_base_models() {
  "$bin" datasets upload wide.csv >/dev/null
  "$bin" datasets upload mlp.csv >/dev/null
  "$bin" train logistic30 --dataset wide --target label --kind logistic --epochs 5 --output json >/dev/null
  "$bin" train mlp64 --dataset mlp --target label --kind mlp --param hidden=256,256 --epochs 3 --output json >/dev/null
  "$bin" deploy logistic30 --version 1 --wait 60 >/dev/null
  "$bin" deploy mlp64 --version 1 --wait 60 >/dev/null
}

start_up batching
cd "$work"
train_and_deploy_base_models
# Wider hidden layers for the batching comparison: compute grows with the square of the
# width, the per-request gRPC cost does not.
batching_models="mlp64 mlp64w512 mlp64w1024 mlp64w2048"
for width in 512 1024 2048; do
  "$bin" train "mlp64w$width" --dataset mlp --target label --kind mlp --param "hidden=$width,$width" --epochs 1 \
    --output json >/dev/null
  "$bin" deploy "mlp64w$width" --version 1 --wait 120 >/dev/null
done

# An ONNX MLP of the same shape as mlp64w1024, batched by its symbolic batch axis.
onnx_python=""
for candidate in "$repo/target/interop-venv/bin/python" python3; do
  if "$candidate" -c "import onnx" 2>/dev/null; then onnx_python="$candidate"; break; fi
done
if [ -n "$onnx_python" ]; then
  "$onnx_python" "$repo/scripts/make-onnx-mlp.py" "$work/onnx1024.onnx" 64 1024 2 4
  "$bin" models import onnx1024 "$work/onnx1024.onnx" >/dev/null
  "$bin" deploy onnx1024 --version 1 --wait 120 >/dev/null
  batching_models="$batching_models onnx1024"
else
  echo "no Python with the onnx package: the ONNX model is left out (run ./scripts/test.sh once to make the venv)" >&2
fi

for features in 30 64; do
  "$bin" bench-echo --features "$features" >"$work/echo$features.out" 2>/dev/null &
  pids+=($!)
  printf -v "ECHO${features}_PID" '%s' "$!"
done
ECHO30=$(wait_listening "$work/echo30.out" 1 | cut -d' ' -f2)
ECHO64=$(wait_listening "$work/echo64.out" 1 | cut -d' ' -f2)
# A bare proxy in front of each echo server: the router's worker link and nothing else,
# the floor for one more gRPC hop (what the router over the network can at best cost).
for features in 30 64; do
  echo_addr=$([ "$features" = 30 ] && echo "$ECHO30" || echo "$ECHO64")
  "$bin" bench-echo --features "$features" --forward-to "$echo_addr" >"$work/proxy$features.out" 2>/dev/null &
  pids+=($!)
done
PROXY30=$(wait_listening "$work/proxy30.out" 1 | cut -d' ' -f2)
PROXY64=$(wait_listening "$work/proxy64.out" 1 | cut -d' ' -f2)

# run CONCURRENCY [bench flags...]
run() {
  local concurrency="$1"; shift
  "$bin" bench --duration-secs "$seconds" --warmup-secs 1 --concurrency "$concurrency" "$@" | tail -n +3
}
# cpu_ticks PID: user + system clock ticks the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run_counting_cpu SERVER_PID CONCURRENCY [bench flags...]: as `run`, and appends to
# $cpu_table the CPU time per request of the server process and of the client, counted
# from /proc over the middle of the measured seconds.
run_counting_cpu() {
  local server="$1" concurrency="$2"; shift 2
  "$bin" bench --duration-secs "$seconds" --warmup-secs 1 --concurrency "$concurrency" "$@" >"$work/counted.out" &
  local client=$!
  sleep 1.2
  local server_before client_before started
  server_before=$(cpu_ticks "$server"); client_before=$(cpu_ticks "$client"); started=$(date +%s.%N)
  sleep "$(awk -v s="$seconds" 'BEGIN { print (s > 1 ? s - 0.5 : 0.5) }')"
  local server_after client_after ended
  server_after=$(cpu_ticks "$server"); client_after=$(cpu_ticks "$client"); ended=$(date +%s.%N)
  wait "$client"
  local row; row=$(tail -n +3 "$work/counted.out")
  echo "$row"
  awk -F'|' -v tick="$(getconf CLK_TCK)" -v cores="$(nproc)" -v elapsed="$(awk -v a="$started" -v b="$ended" 'BEGIN { print b - a }')" \
    -v server="$((server_after - server_before))" -v client="$((client_after - client_before))" '{
      per_second = $5; server_cores = server / tick / elapsed; client_cores = client / tick / elapsed
      printf "| %s | %s | %s | %.0f | %.0f | %.0f |\n", $2, $3, $5, server_cores / per_second * 1e6,
        client_cores / per_second * 1e6, 100 * (server_cores + client_cores) / cores
    }' <<<"$row" | sed 's/|  */| /g; s/  *|/ |/g' >>"$cpu_table"
}

echo "| target | model | concurrency | requests/s | p50 µs | p99 µs | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
run 1,16,64 --target "$ECHO30" --model logistic30 --label echo
run 1,16,64 --target "$WORKER" --model logistic30 --label worker
run 1,16,64 --target "$ROUTER" --model logistic30 --label router
run 1,16,64 --target "$ECHO64" --model mlp64 --label echo
run 1,16,64 --target "$WORKER" --model mlp64 --label worker
run 1,16,64 --target "$ROUTER" --model mlp64 --label router

for model in $batching_models; do
  run 64 --target "$WORKER" --model "$model" --label "worker, batching on"
done
# Batching off and on taking turns in this same `up` (a deployment's own batching
# settings), so both sides of each ratio run in the same phase of the VM; the sections
# above and below compare runs minutes apart.
# Each of these runs also reports the CPU it cost per request, server (`up`) and client
# (`modelplane bench`) apart, in a second table printed at the end: what bounds the
# ratio when both share the 2 cores.
cpu_table="$work/cpu.md"
for model in $batching_models; do
  for round in 1 2; do
    "$bin" deploy "$model" --version 1 --max-batch-size 0 --wait 60 >/dev/null
    run_counting_cpu "$UP_PID" 64 --target "$WORKER" --model "$model" --label "worker, batching off, taking turns ($round)"
    "$bin" deploy "$model" --version 1 --wait 60 >/dev/null
    run_counting_cpu "$UP_PID" 64 --target "$WORKER" --model "$model" --label "worker, batching on, taking turns ($round)"
  done
done
# The protocol's own cost per request: the echo server answering the same client.
run_counting_cpu "$ECHO64_PID" 64 --target "$ECHO64" --model mlp64 --label "echo, CPU counted"

# The router with its worker behind loopback HTTP/2, as in a cluster: a fresh `up` on
# the same data directory.
kill "$UP_PID"; wait "$UP_PID" 2>/dev/null || true
start_up network --router-via-network
run 1 --target "$ECHO30" --model logistic30 --label "echo"
run 1 --target "$PROXY30" --model logistic30 --label "echo behind a bare proxy"
run 1 --target "$ECHO64" --model mlp64 --label "echo"
run 1 --target "$PROXY64" --model mlp64 --label "echo behind a bare proxy"
for model in logistic30 mlp64; do
  run 1 --target "$WORKER" --model "$model" --label "worker"
  run 1 --target "$ROUTER" --model "$model" --label "router over the network"
done

# The same MLPs with batching off.
kill "$UP_PID"; wait "$UP_PID" 2>/dev/null || true
start_up unbatched --max-batch-size 0
for model in $batching_models; do
  run 64 --target "$WORKER" --model "$model" --label "worker, batching off"
done

# Router and worker as separate processes on a real etcd, as a cluster runs them (when
# etcd is installed: `./scripts/test.sh` installs it): worker and router at concurrency 1.
if command -v etcd >/dev/null; then
  kill "$UP_PID"; wait "$UP_PID" 2>/dev/null || true
  start_etcd "$work/etcd"
  client=$ETCD_CLIENT
  # spawn VAR ROLE ARGS...: starts one role (not in a subshell, so cleanup knows its pid)
  # and sets VAR to its address.
  spawn() {
    local var="$1" role="$2"; shift 2
    "$bin" "$role" --listen 127.0.0.1:0 "$@" >"$work/$var.out" 2>"$work/$var.log" &
    pids+=($!)
    printf -v "$var" '%s' "$(wait_listening "$work/$var.out" 1 | cut -d' ' -f2)"
  }
  # Every call needs a key: the registry stores an admin key, each role makes its own.
  spawn REGISTRY registry --store "$client" --blob-dir "$work/blobs" --admin-key-file "$work/admin.key"
  spawn TRAINER trainer --etcd "$client" --registry "$REGISTRY" --id bench-trainer --api-key-file "$work/keys/trainer.key"
  spawn WORKER worker --etcd "$client" --registry "$REGISTRY" --id bench-worker --cache-dir "$work/cache" \
    --api-key-file "$work/keys/worker.key"
  spawn ROUTER router --store "$client" --http-listen "" --api-key-file "$work/keys/router.key"
  # The CLI, `bench` and the proxies below call as the admin.
  export MODELPLANE_API_KEY_FILE="$work/admin.key"
  # The floor of the router's hop, exactly: a bare proxy in front of the same worker
  # (one per model, since the proxy's metadata states the input's width).
  spawn WORKER_PROXY_logistic30 bench-echo --features 30 --forward-to "$WORKER"
  spawn WORKER_PROXY_mlp64 bench-echo --features 64 --forward-to "$WORKER"
  export MODELPLANE_REGISTRY=$REGISTRY MODELPLANE_TRAINER=$TRAINER MODELPLANE_ROUTER=$ROUTER
  train_and_deploy_base_models
  for model in logistic30 mlp64; do
    run 1 --target "$WORKER" --model "$model" --label "worker process"
    proxy="WORKER_PROXY_$model"
    run 1 --target "${!proxy}" --model "$model" --label "bare proxy in front of the worker process"
    run 1 --target "$ROUTER" --model "$model" --label "router process"
  done
else
  echo "no etcd on PATH: router and worker as separate processes left out (./scripts/test.sh installs it)" >&2
fi

echo
echo "CPU per request at concurrency 64 (batching taking turns, and the echo server):"
echo
echo "| target | model | requests/s | server CPU µs per request | client CPU µs per request | both cores busy % |"
echo "| --- | --- | --- | --- | --- | --- |"
cat "$cpu_table"
