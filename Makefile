# mailchaos: chaos engineering for e-mail systems.
GO      ?= go
BIN     := bin/mailchaos
# Empty outside a git checkout: the version then comes from the build information.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS := -X github.com/mailchaos/mailchaos/cli.Version=$(VERSION)
# Benchmark iterations; raise for steadier figures.
BENCHTIME ?= 1s
FUZZTIME  ?= 30s

# Pinned code generators for plugins/proto (protoc itself is Debian's
# protobuf-compiler). protoc-gen-go-grpc stays at 1.3.0: later versions
# generate code that needs a newer grpc than go-plugin's.
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.3.0
TOOLS              := $(CURDIR)/bin/tools
EXAMPLES           := $(wildcard plugins/examples/*)

.PHONY: build test lint bench fuzz demo demo-mail plugins proto proto-check clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) .

## test: lint and the generated-code check, then every test with the race
## detector, the example plugins' included.
test: lint proto-check
	$(GO) test -race -count=1 -timeout 20m ./...
	@for d in $(EXAMPLES); do echo "== $$d"; (cd $$d && $(GO) vet ./... && $(GO) test -race -count=1 ./...) || exit 1; done

## plugins: build the example plugins into ./plugins.d, where mailchaos finds them.
plugins:
	@mkdir -p plugins.d
	@for d in $(EXAMPLES); do (cd $$d && $(GO) build -o $(CURDIR)/plugins.d/mailchaos-fault-$$(basename $$d) .) || exit 1; done
	@ls plugins.d

## proto: regenerate plugins/proto from fault.proto with the pinned generators.
proto:
	@command -v protoc >/dev/null || { echo "protoc is missing: apt-get install protobuf-compiler"; exit 1; }
	GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_GRPC)
	cd plugins/proto && PATH=$(TOOLS):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative fault.proto

## proto-check: fail if the committed generated code is not what fault.proto
## generates (skipped without protoc, except in CI).
proto-check:
	@if ! command -v protoc >/dev/null; then \
		if [ -n "$$CI" ]; then echo "protoc is missing: apt-get install protobuf-compiler"; exit 1; fi; \
		echo "proto-check skipped: protoc is not installed"; exit 0; fi; \
	GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO) && GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_GRPC) && \
	tmp=$$(mktemp -d) && cp plugins/proto/fault.proto $$tmp/ && \
	(cd $$tmp && PATH=$(TOOLS):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative fault.proto) && \
	for f in fault.pb.go fault_grpc.pb.go; do \
		cmp -s $$tmp/$$f plugins/proto/$$f || { echo "plugins/proto/$$f is stale: run make proto"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "plugins/proto is current"

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
	$(GO) test -run='^$$' -fuzz=FuzzSMTPSession -fuzztime=$(FUZZTIME) ./targets/mailstack/
	$(GO) test -run='^$$' -fuzz=FuzzMatch -fuzztime=$(FUZZTIME) ./clamd/
	$(GO) test -run='^$$' -fuzz=FuzzIMAPSession -fuzztime=$(FUZZTIME) ./targets/mailstack/access/
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./experiments/
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./internal/yamlfile/

## demo: run the remediated AV-engine incident experiment on the embedded stack.
demo: build
	$(BIN) run experiments/catalog/av-latency-remediated.yaml

## demo-mail: start the embedded mail stack, send clean and infected mail, read it back.
demo-mail: build
	@targets/mailstack/demo/demo.sh $(BIN)

## realstack-up: bring up a real mail stack (Debian's Postfix, clamav-milter,
## clamd and Dovecot; needs root) in REALSTACK_DIR, with bin/mailchaos as the
## proxy on its clamd link. See targets/realstack/README.md.
REALSTACK_DIR     ?= .realstack
REALSTACK_PROFILE ?= incident
.PHONY: realstack-up realstack-down
realstack-up: build
	targets/realstack/realstack.sh up $(REALSTACK_DIR) --profile $(REALSTACK_PROFILE) --mailchaos $(BIN)

## realstack-down: stop the stack in REALSTACK_DIR (its logs stay).
realstack-down:
	targets/realstack/realstack.sh down $(REALSTACK_DIR)

clean:
	rm -rf bin plugins.d
