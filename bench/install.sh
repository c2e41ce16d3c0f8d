#!/usr/bin/env bash
# Installs the benchmark tools on first use. Idempotent: anything already
# present is left alone, so later runs take a second.
#
#   bench/install.sh            Debian packages + fortio + ghz
#   bench/install.sh consul     the same, plus Consul built from its Go module
#
# Debian packages: iperf3 haproxy nginx (+ its stream module) caddy
# nghttp2-client (h2load) wrk. Go tools go to $OUTRIGGER_BENCH_CACHE/bin
# (default ~/.cache/outrigger-bench/bin), never into the project's go.mod.
set -euo pipefail

CACHE=${OUTRIGGER_BENCH_CACHE:-$HOME/.cache/outrigger-bench}
FORTIO_VERSION=v1.63.3  # newer ones need a module the Go proxy does not serve
GHZ_VERSION=v0.120.0
CONSUL_VERSION=v1.22.0
mkdir -p "$CACHE/bin"
say() { echo "bench/install: $*" >&2; }

# --- Debian packages -------------------------------------------------------
pkgs=()
command -v iperf3 >/dev/null || pkgs+=(iperf3)
command -v haproxy >/dev/null || pkgs+=(haproxy)
command -v nginx >/dev/null || pkgs+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || pkgs+=(libnginx-mod-stream)
command -v caddy >/dev/null || pkgs+=(caddy)
command -v h2load >/dev/null || pkgs+=(nghttp2-client)
command -v wrk >/dev/null || pkgs+=(wrk)
if [ ${#pkgs[@]} -gt 0 ]; then
	say "apt-get install ${pkgs[*]} (first use only)"
	SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	# Keep the packages' init scripts from starting daemons on ports 80/443.
	export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
	$SUDO apt-get update -q >&2
	$SUDO apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2
	# Some of them start a service when no policy stops them; stop those.
	for s in nginx haproxy caddy; do $SUDO service "$s" stop >/dev/null 2>&1 || true; done
	say "apt packages done"
fi

# --- Go tools ----------------------------------------------------------------
export GOBIN="$CACHE/bin" GOFLAGS=-mod=mod GOTOOLCHAIN=local
if [ ! -x "$CACHE/bin/fortio" ]; then
	say "go install fortio.org/fortio@$FORTIO_VERSION (first use only)"
	go install "fortio.org/fortio@$FORTIO_VERSION"
fi
if [ ! -x "$CACHE/bin/ghz" ]; then
	say "go install github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION (first use only)"
	go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
fi

# --- Consul (heavy: several minutes of compiling; cached) ---------------------
# Its go.mod has replace lines, so `go install consul@v` refuses; build it
# from a throwaway module that requires it instead.
if [ "${1:-}" = consul ] && [ ! -x "$CACHE/bin/consul" ]; then
	say "building Consul $CONSUL_VERSION from its Go module (first use only; several minutes)"
	d="$CACHE/consul-build"
	rm -rf "$d" && mkdir -p "$d"
	(
		cd "$d"
		export GONOSUMDB=github.com/hashicorp/consul CGO_ENABLED=0
		printf 'module consulbuild\n\ngo 1.26\n' >go.mod
		go get "github.com/hashicorp/consul@$CONSUL_VERSION" >&2
		say "consul: modules fetched, compiling"
		go build -trimpath -o "$CACHE/bin/consul.tmp" github.com/hashicorp/consul
		mv "$CACHE/bin/consul.tmp" "$CACHE/bin/consul"
	)
	say "consul built"
fi
say "tools ready in $CACHE/bin and /usr/bin"
