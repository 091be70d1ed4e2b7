# mailchaos: chaos engineering for e-mail systems.
GO      ?= go
BIN     := bin/mailchaos
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/mailchaos/mailchaos/cli.Version=$(VERSION)
# Benchmark iterations; raise for steadier figures.
BENCHTIME ?= 1s
FUZZTIME  ?= 30s

.PHONY: build test lint bench fuzz demo demo-mail clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) .

## test: lint, then every test with the race detector.
test: lint
	$(GO) test -race -count=1 -timeout 20m ./...

## lint: gofmt and go vet.
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

## bench: every benchmark, figures printed per benchmark.
bench:
	$(GO) test -run='^$$' -bench=. -skip='StackThroughput|Memory5000' -benchmem -benchtime=$(BENCHTIME) ./...
	$(GO) test -run='^$$' -bench=StackThroughput -benchtime=20000x ./targets/mailstack/
	$(GO) test -run='^$$' -bench=Memory5000 -benchtime=1x -timeout 10m ./faults/loadsurge/

## fuzz: run each fuzz target for FUZZTIME.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseConfig -fuzztime=$(FUZZTIME) ./targets/mailstack/
	$(GO) test -run='^$$' -fuzz=FuzzMatch -fuzztime=$(FUZZTIME) ./targets/mailstack/clamd/
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./experiments/
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./internal/yamlfile/

## demo: run the remediated AV-engine incident experiment on the embedded stack.
demo: build
	$(BIN) --log-level warn run experiments/catalog/av-latency-remediated.yaml

## demo-mail: start the embedded mail stack, send clean and infected mail, read it back.
demo-mail: build
	@targets/mailstack/demo/demo.sh $(BIN)

clean:
	rm -rf bin
