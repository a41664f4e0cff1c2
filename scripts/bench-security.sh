#!/usr/bin/env bash
# What authentication and TLS cost a request through the router: two `modelplane up`s
# side by side (one plaintext, one serving TLS with a certificate made here by openssl),
# a 30-feature logistic model on each, and `modelplane bench` at concurrency 1 and 16
# taking turns: anonymous (the `predictor` role `up` gives callers without a key), with
# an API key (verified once, then from the cache), and with a key over TLS. Each
# configuration runs four times, interleaved in alternating order, so drift on a noisy
# machine shows and favours none. Then
# `cargo bench -p modelplane-store --bench auth`: AuthLayer::admit alone.
#
#   scripts/bench-security.sh [SECONDS_PER_RUN]      (default 5; prints markdown tables)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
cargo build --release --quiet -p modelplane
bin="$PWD/target/release/modelplane"
source scripts/lib/processes.sh

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" \
  -days 1 -subj "/CN=bench-ca" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/server.key" -out "$work/server.csr" \
  -subj "/CN=localhost" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" >"$work/ext.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -out "$work/server.pem" -days 1 -extfile "$work/ext.cnf" 2>/dev/null

python3 - "$work" <<'PY'
import random, sys
rng = random.Random(3)
with open(f"{sys.argv[1]}/wide.csv", "w") as f:
    f.write(",".join(f"x{i}" for i in range(30)) + ",label\n")
    for _ in range(2000):
        xs = [rng.gauss(0, 1) for _ in range(30)]
        f.write(",".join(f"{x:.4f}" for x in xs) + f",{int(sum(xs[:5]) > 0)}\n")
PY

# start_up NAME [flags...]: `up` with its data in $work/NAME; sets ROUTER_NAME and
# trains and deploys logistic30 there.
start_up() {
  local name="$1"; shift
  "$bin" up --data-dir "$work/$name" --grpc-port 0 --http-port 0 --registry-port 0 --trainer-port 0 \
    --worker-port 0 "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  local registry trainer router
  while read -r role addr; do
    case "$role" in registry) registry=$addr ;; trainer) trainer=$addr ;; router) router=$addr ;; esac
  done < <(wait_listening "$work/$name.out" 5)
  printf -v "ROUTER_$name" '%s' "$router"
  (
    export MODELPLANE_REGISTRY=$registry MODELPLANE_TRAINER=$trainer MODELPLANE_ROUTER=$router
    export MODELPLANE_DATA_DIR="$work/$name"
    [ "$name" = tls ] && export MODELPLANE_TLS_CA="$work/ca.pem"
    cd "$work"
    "$bin" datasets upload wide.csv >/dev/null
    "$bin" train logistic30 --dataset wide --target label --kind logistic --epochs 5 --output json >/dev/null
    "$bin" deploy logistic30 --version 1 --wait 60 >/dev/null
  )
}
start_up plain
start_up tls --tls-cert "$work/server.pem" --tls-key "$work/server.key" --tls-ca "$work/ca.pem"

run() {
  "$bin" bench --duration-secs "$seconds" --warmup-secs 1 --concurrency 1,16 --model logistic30 "$@" | tail -n +3
}
echo "| target | model | concurrency | requests/s | p50 µs | p99 µs | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
anonymous() { run --target "$ROUTER_plain" --label "anonymous, plaintext ($1)"; }
keyed() { run --target "$ROUTER_plain" --api-key-file "$work/plain/admin.key" --label "API key, plaintext ($1)"; }
tls() { run --target "$ROUTER_tls" --api-key-file "$work/tls/admin.key" --tls-ca "$work/ca.pem" --label "API key, TLS ($1)"; }
# Four rounds, the order reversed every other one, so a drift favours no configuration.
for round in 1 2 3 4; do
  if [ $((round % 2)) -eq 1 ]; then anonymous "$round"; keyed "$round"; tls "$round"
  else tls "$round"; keyed "$round"; anonymous "$round"; fi
done
echo
cargo bench --quiet -p modelplane-store --bench auth 2>/dev/null
