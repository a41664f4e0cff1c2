# Sourced by the benchmark scripts: a scratch directory `work` and the `pids` of what
# they start, both cleaned up on exit; waiting for a modelplane process to listen; and
# a one-member etcd.

work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Waits until $1 (a process's stdout) has $2 "listening on" lines; prints "role addr" pairs.
wait_listening() {
  for _ in $(seq 1 600); do
    if [ "$(grep -c ' listening on ' "$1" || true)" -ge "$2" ]; then
      sed -n 's/^modelplane: \(.*\) listening on \(.*\)$/\1 \2/p' "$1"; return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2; cat "$1" >&2; return 1
}

# `start_etcd DIR` starts a one-member etcd on free loopback ports with its data in DIR
# (its log beside it, DIR.log), adds its pid to `pids`, waits until it takes
# connections and sets ETCD_CLIENT to its client URL.

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_etcd() {
  local dir="$1" client_port peer
  client_port=$(free_port)
  ETCD_CLIENT="http://127.0.0.1:$client_port"
  peer="http://127.0.0.1:$(free_port)"
  ETCD_UNSUPPORTED_ARCH="$(uname -m)" etcd --name bench --data-dir "$dir" \
    --listen-client-urls "$ETCD_CLIENT" --advertise-client-urls "$ETCD_CLIENT" --listen-peer-urls "$peer" \
    --initial-advertise-peer-urls "$peer" --initial-cluster "bench=$peer" >/dev/null 2>"$dir.log" &
  pids+=($!)
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$client_port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "etcd did not start; see $dir.log" >&2
  return 1
}
