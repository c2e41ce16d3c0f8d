# Outrigger — the two commands that matter: `make run` and `make test`.
GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
export CGO_ENABLED ?= 0

.PHONY: all build run test fuzz lint bench clean

all: build

## build: static binaries of outrigger and the demo echo backend into bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/outrigger ./cmd/outrigger
	$(GO) build -trimpath -o $(BIN)/echo ./examples/echo

## run: the local demo — three echo backends behind Outrigger on 127.0.0.1:9000
run: build
	BIN=$(BIN) ./examples/local/run.sh

## test: everything CI runs — vet, format check, unit tests with -race, end-to-end tests, short fuzz runs (3 × 10 s)
test: lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=10s

## fuzz: run each fuzz target for FUZZTIME (go test -fuzz takes one package at a time)
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./cmd/outrigger/
	$(GO) test -run '^$$' -fuzz '^FuzzMatch$$' -fuzztime $(FUZZTIME) ./proxy/route/
	$(GO) test -run '^$$' -fuzz '^FuzzGuardSplitInvariance$$' -fuzztime $(FUZZTIME) ./proxy/

## lint: go vet plus a gofmt check
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

## bench: go benchmarks of the hot path (Pick, catalog fan-out, route match, TCP and HTTP through the proxy)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./balancer/ ./discovery/catalog/ ./proxy/ ./proxy/route/

clean:
	rm -rf $(BIN)
