#!/usr/bin/env bash
# A/B-compares the CPU two Outrigger setups spend per request, run side by
# side so that whatever else the machine is doing hits both alike.
#
#   bench/abpair.sh [-r REPS] [-t SECS] [-c CONNS] BIN_A:MODE_A BIN_B:MODE_B
#
# MODE is plain, trace0 or trace100 (B9's: tracing to an OTLP sink at 0%
# or 100% sampling); BIN is an outrigger binary (bin/outrigger, or another
# build to compare with). Both proxies run pinned to CPU 1 (GOMAXPROCS=1),
# each in front of the same HTTP backend and each driven by its own fortio
# at 1000 req/s with CONNS connections from CPU 0, for SECS seconds (after
# 3 s of warm-up). Each repetition swaps which setup listens where. It
# prints each pair's CPU per 1000 requests and B÷A, then the median.
#
# Why: B9 measures its targets one after another. On a shared virtual
# machine the host's noise moves a plain run by ±10–30% from one minute to
# the next, more than the few per cent being measured. Side by side, the
# two setups see the same noise and the ratio holds within about ±2%
# (tracing's cost: docs/benchmarks.md, Findings). The cost of running two
# proxies on one core is that each sees a colder cache than alone, so the
# ratio can read a little differently from B9's.
#
# Needs: bin/outrigger and bin/echo (make build), fortio (bench/install.sh).
# Takes the benchmark lock benchrun uses; ports 18240-18299.
set -euo pipefail
cd "$(dirname "$0")/.."

reps=4 secs=10 conns=16
while getopts r:t:c: o; do
	case $o in
	r) reps=$OPTARG ;;
	t) secs=$OPTARG ;;
	c) conns=$OPTARG ;;
	*) sed -n '2,13p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ $# -ne 2 ]; then
	sed -n '2,13p' "$0" >&2
	exit 2
fi
fortio=${OUTRIGGER_BENCH_CACHE:-$HOME/.cache/outrigger-bench}/bin/fortio
for f in "$fortio" bin/echo; do
	[ -x "$f" ] || { echo "abpair: $f missing: run make build and bench/install.sh" >&2; exit 1; }
done
for s in "$1" "$2"; do
	bin=${s%%:*} mode=${s#*:}
	[ -x "$bin" ] || { echo "abpair: $bin is not an executable" >&2; exit 1; }
	case $mode in plain | trace0 | trace100) ;; *)
		echo "abpair: mode $mode: want plain, trace0 or trace100" >&2; exit 2 ;;
	esac
done

exec 9>/tmp/outrigger-bench.lock
flock -n 9 || { echo "abpair: waiting for the benchmark lock (benchrun is measuring)" >&2; flock 9; }

dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

go build -o "$dir/otlpsink" ./bench/cmd/otlpsink
taskset -c 0 "$dir/otlpsink" -listen 127.0.0.1:18296 2>/dev/null &
pids+=($!)
taskset -c 0 bin/echo -name b1 -mode http -body 1024 -listen 127.0.0.1:18245 >/dev/null 2>&1 &
pids+=($!)
cat >"$dir/services.yaml" <<EOF
services:
  - name: b.bench
    endpoints:
      - {id: b1, address: "127.0.0.1:18245"}
EOF

# config PORT ADMIN MODE writes an Outrigger config.
config() {
	cat <<EOF
node: {name: bench, namespace: bench}
admin: {listen: 127.0.0.1:$2}
discovery:
  - {name: local, file: {path: $dir/services.yaml}}
outbound:
  - name: b
    listen: 127.0.0.1:$1
    service: b.bench
    protocol: http
    balancer: round_robin
    idle_timeout: 5m
EOF
	case $3 in
	trace0) echo 'tracing: {endpoint: "http://127.0.0.1:18296", protocol: grpc, sampler_ratio: 0}' ;;
	trace100) echo 'tracing: {endpoint: "http://127.0.0.1:18296", protocol: grpc, sampler_ratio: 1}' ;;
	esac
}

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # clock ticks (1/100 s)

waitport() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "abpair: nothing listens on $1; logs in $dir" >&2
	exit 1
}

ratios=()
for rep in $(seq "$reps"); do
	a=$1 b=$2
	if [ $((rep % 2)) -eq 0 ]; then a=$2 b=$1; fi # swap places
	config 18240 18290 "${a#*:}" >"$dir/a.yaml"
	config 18241 18291 "${b#*:}" >"$dir/b.yaml"
	OUTRIGGER_LOG_LEVEL=warn GOMAXPROCS=1 taskset -c 1 "${a%%:*}" run -c "$dir/a.yaml" >"$dir/a.log" 2>&1 &
	pa=$!
	OUTRIGGER_LOG_LEVEL=warn GOMAXPROCS=1 taskset -c 1 "${b%%:*}" run -c "$dir/b.yaml" >"$dir/b.log" 2>&1 &
	pb=$!
	pids+=("$pa" "$pb")
	waitport 18240
	waitport 18241
	taskset -c 0 "$fortio" load -qps 1000 -uniform -c "$conns" -t 3s "http://127.0.0.1:18240/" >/dev/null 2>&1 &
	wa=$!
	taskset -c 0 "$fortio" load -qps 1000 -uniform -c "$conns" -t 3s "http://127.0.0.1:18241/" >/dev/null 2>&1
	wait $wa
	a0=$(cpu $pa) b0=$(cpu $pb)
	taskset -c 0 "$fortio" load -qps 1000 -uniform -c "$conns" -t "${secs}s" -json "$dir/fa.json" "http://127.0.0.1:18240/" >/dev/null 2>&1 &
	fa=$!
	taskset -c 0 "$fortio" load -qps 1000 -uniform -c "$conns" -t "${secs}s" -json "$dir/fb.json" "http://127.0.0.1:18241/" >/dev/null 2>&1
	wait $fa
	a1=$(cpu $pa) b1=$(cpu $pb)
	kill $pa $pb
	wait $pa $pb 2>/dev/null || true
	qa=$(grep -o '"ActualQPS": [0-9.]*' "$dir/fa.json" | awk '{print $2}')
	qb=$(grep -o '"ActualQPS": [0-9.]*' "$dir/fb.json" | awk '{print $2}')
	# CPU per 1000 requests of each, then the ratio of the second given to the first
	read -r ca cb r < <(awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v qa="$qa" -v qb="$qb" -v s="$secs" -v swap=$((rep % 2 == 0)) 'BEGIN {
		ca = a / 100 / s / (qa / 1000); cb = b / 100 / s / (qb / 1000)
		if (swap) { t = ca; ca = cb; cb = t }
		printf "%.4f %.4f %.3f\n", ca, cb, cb / ca }')
	printf 'rep %d: %s %.4f vCPU/1k, %s %.4f vCPU/1k, B/A %s\n' "$rep" "$1" "$ca" "$2" "$cb" "$r"
	ratios+=("$r")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {
	m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
	printf "median B/A %.3f (%+.1f%%) over %d pairs, range %s to %s\n", m, (m - 1) * 100, NR, v[1], v[NR] }'
