# Outrigger — the two commands that matter: `make run` and `make test`.
GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
export CGO_ENABLED ?= 0

.PHONY: all build run test fuzz lint bench bench-bin bench-go bench-full bench-smoke clean

all: build

## build: static binaries of outrigger and the demo echo backend into bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/outrigger ./cmd/outrigger
	$(GO) build -trimpath -o $(BIN)/echo ./examples/echo

## run: the local demo — three echo backends behind Outrigger on 127.0.0.1:9000
run: build
	BIN=$(BIN) ./examples/local/run.sh

## test: everything CI runs — vet, format check, unit and end-to-end tests with -race (every fuzz target
## also replays its seeds and committed corpus in testdata/fuzz), then a short fuzz run of each target (5 × 10 s)
test: lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=10s

## fuzz: explore each fuzz target for FUZZTIME (go test -fuzz takes one package at a time); commit what it finds under testdata/fuzz
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./cmd/outrigger/
	$(GO) test -run '^$$' -fuzz '^FuzzMatch$$' -fuzztime $(FUZZTIME) ./proxy/route/
	$(GO) test -run '^$$' -fuzz '^FuzzGuardSplitInvariance$$' -fuzztime $(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime $(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) ./proxy/internal/h1/

## lint: go vet plus a gofmt check
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	@if git grep -nE '^(<<<<<<< |>>>>>>> |=======$$)' -- ':!*.pb.go' 2>/dev/null; then echo "merge conflict markers left (above)"; exit 1; fi

## bench-go: go benchmarks of the hot path (Pick, catalog fan-out, route match, TCP and HTTP through the proxy)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./balancer/ ./discovery/catalog/ ./proxy/ ./proxy/route/

## bench: Outrigger beside direct, HAProxy, nginx, Caddy and Consul, 3 repetitions (~15 min); tools installed on first use; see docs/benchmarks.md
BENCHFLAGS ?=
## bench-bin: the binaries the harness runs besides ours (Go's stock ReverseProxy, the B6 reference)
bench-bin: build
	$(GO) build -trimpath -o $(BIN)/rpbaseline ./bench/cmd/rpbaseline

bench: bench-bin
	$(GO) run ./bench/cmd/benchrun -set quick -docs docs/benchmarks.md $(BENCHFLAGS)

## bench-full: the same with 5 repetitions, longer runs and the full connection sweep
bench-full: bench-bin
	$(GO) run ./bench/cmd/benchrun -set full -docs docs/benchmarks.md $(BENCHFLAGS)

## bench-smoke: one short repetition of every scenario; asserts only that each produced numbers (CI)
bench-smoke: bench-bin
	$(GO) run ./bench/cmd/benchrun -set smoke -out $${TMPDIR:-/tmp}/outrigger-bench-smoke $(BENCHFLAGS)

clean:
	rm -rf $(BIN)
