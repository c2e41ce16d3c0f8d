#!/usr/bin/env bash
# Starts the local demo: three echo backends and Outrigger in front of them.
# Used by `make run`; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}

pids=()
cleanup() {
	trap - INT TERM EXIT
	echo
	echo "stopping the demo..."
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

for i in 1 2 3; do
	"$BIN/echo" -name "echo-$i" -listen "127.0.0.1:910$i" -mode tcp 2>/dev/null &
	pids+=($!)
done
for i in 1 2; do
	"$BIN/echo" -name "web-$i" -listen "127.0.0.1:920$i" -mode http 2>/dev/null &
	pids+=($!)
done
"$BIN/echo" -name "api-1" -listen "127.0.0.1:9301" -mode http 2>/dev/null &
pids+=($!)
for i in 1 2; do
	"$BIN/echo" -name "grpc-$i" -listen "127.0.0.1:940$i" -mode grpc 2>/dev/null &
	pids+=($!)
done
"$BIN/outrigger" run -c examples/local/outrigger.yaml &
pids+=($!)

# Wait for readiness so the hints below work the moment they are printed.
for _ in $(seq 1 50); do
	if curl -fsS http://127.0.0.1:15000/ready >/dev/null 2>&1; then break; fi
	sleep 0.1
done

cat <<'HINTS'

  Outrigger is running the local demo.

  Try, in another terminal:
    bin/echo -dial 127.0.0.1:9000 -n 4     # TCP: four connections, the backends in turn
    curl -s 127.0.0.1:9080/shop            # HTTP: routed to web.demo (web-1, web-2)
    curl -s 127.0.0.1:9080/api/orders      # HTTP: routed to api.demo as /orders
    curl -s --http2-prior-knowledge 127.0.0.1:9080/   # the same over h2c
    # gRPC on 127.0.0.1:9090: grpc.health.v1.Health/Check, balanced per call over
    # grpc-1 and grpc-2 (any gRPC client; the x-echo-name header names the backend)
    curl -s 127.0.0.1:15000/endpoints      # endpoints, their source and in-flight counts
    curl -s 127.0.0.1:15000/ready          # readiness, with reasons when not ready
    curl -s 127.0.0.1:15000/config         # the effective config
    curl -s '127.0.0.1:15000/why?listener=web&path=/api/orders'   # which route, service, endpoint, and why
    curl -s 127.0.0.1:15000/metrics | grep outrigger_   # Prometheus metrics (docs/metrics.md)
    curl -si -H 'x-outrigger-debug: why' 127.0.0.1:9080/api/orders | grep -i x-outrigger-why   # the trail of one request

  Edit examples/local/services.yaml (drop echo-3, or set state: draining):
  new connections follow within a second; open ones are not cut.

  Ctrl-C stops everything (Outrigger drains first).

HINTS
wait "${pids[-1]}"
