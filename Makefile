# Gatehouse. `make run` starts the whole suite in one process; `make test`
# installs what the tests need (as root, with apt/npm/go install) and runs
# every test with the race detector.
SHELL := /bin/bash
GO ?= go
BIN := bin/gatehouse
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
export CGO_ENABLED := 1

.PHONY: build run test test-deps bench fuzz lint clean image test-deploy

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/gatehouse

run: build
	./$(BIN) dev

test-deps:
	./scripts/install-test-deps.sh

test: test-deps
	$(GO) test -race -timeout 18m ./...
	# Allocation counts, which the race detector's sync.Pool makes random
	# (the HMAC case of this test is counted only without -race).
	$(GO) test -count=1 -run 'AllocatesPerBlock' ./accesslog

# The container image gatehouse:$(VERSION) (deploy/container/Containerfile):
# the binary of `make build` (cgo: build on a glibc no newer than the
# base's, Debian 12 for the default), CA certificates, a non-root user.
# CONTAINER=docker works too; BASE_IMAGE picks another Debian-like base.
CONTAINER ?= podman
BASE_IMAGE ?= debian:bookworm-slim
IMAGE ?= gatehouse:$(VERSION)
IMAGE_FLAGS ?= $(if $(filter podman,$(notdir $(CONTAINER))),--format docker,)
image: build
	$(CONTAINER) build $(IMAGE_FLAGS) --build-arg BASE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) \
		-f deploy/container/Containerfile -t $(IMAGE) bin/

# The Compose stack of deploy/compose run with podman-compose from the image
# above, driven end to end by the e2e Envoy stand-in (root; see
# docs/DEPLOY.md). scripts/deploy-test-setup.sh installs podman and builds
# the base image from Debian packages once (this machine has no registry).
test-deploy:
	eval "$$(./scripts/deploy-test-setup.sh | tail -1 | sed 's/^/export /')" && \
	$(MAKE) image IMAGE=gatehouse:test-deploy && \
	GATEHOUSE_TEST_COMPOSE_IMAGE=gatehouse:test-deploy $(GO) test -count=1 -timeout 20m -run 'TestComposeStack' -v ./e2e/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Each fuzz target for FUZZTIME (default 10s); `make fuzz FUZZTIME=60s` for a longer run.
FUZZTIME ?= 10s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@test -x .tools/staticcheck || GOBIN=$(CURDIR)/.tools $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	.tools/staticcheck ./...
	@test -x .tools/deadcode || GOBIN=$(CURDIR)/.tools $(GO) install golang.org/x/tools/cmd/deadcode@v0.53.0
	@out=$$(.tools/deadcode -test ./...) || exit 1; if [ -n "$$out" ]; then echo "unreachable code (deadcode -test ./...):"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin .gatehouse
	$(GO) clean -testcache

# authz: `gatehouse authz` under Envoy-shaped load (1,000 users, 20 % invalid
# tokens) next to a do-nothing ext_authz server (the floor), twice: with the
# tokens reused (cached path) and with fresh tokens, each signed for one
# request before the measurements (-fresh per round; every Check verifies a
# signature). Prints req/s, p50/p99 and server CPU µs per check of each row.
# BENCH_AUTHZ_FLAGS="-duration 30s" for longer.
BENCH_AUTHZ_FLAGS ?= -duration 10s -rounds 2 -fresh 20000
.PHONY: bench-authz
bench-authz: build
	$(GO) build -o bin/authz-load ./sidecars/authz/cmd/authz-load
	./bin/authz-load -gatehouse ./$(BIN) $(BENCH_AUTHZ_FLAGS)

# ratelimit: envoyproxy/ratelimit (defaults, and with Redis pipelining) and
# Gatehouse on one redis-server, same config directory, same load generator,
# interleaved over rounds; prints every setting, the per-round ratios and
# the table of docs/PERFORMANCE.md (## ratelimit, medians), replays the
# scripted allow/deny sequence against each, and fails when more than 0.1 %
# of a service's calls were not decided by Redis. BENCH_RATELIMIT_FLAGS for
# length and rounds, e.g. "-duration 20s -rounds 5" (smoke: "-duration 2s -rounds 1").
RATELIMIT_ENVOYPROXY := github.com/envoyproxy/ratelimit/src/service_cmd@v1.4.1-0.20260122083618-3fb702589d36
BENCH_RATELIMIT_FLAGS ?= -duration 10s -rounds 3
.PHONY: bench-ratelimit
bench-ratelimit: build
	@test -x .tools/bin/service_cmd || { echo "installing $(RATELIMIT_ENVOYPROXY)"; GOBIN=$(CURDIR)/.tools/bin $(GO) install $(RATELIMIT_ENVOYPROXY); }
	$(GO) build -o .tools/bin/ratelimitbench ./sidecars/ratelimit/ratelimitbench
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1s ./ratelimit/...
	.tools/bin/ratelimitbench compare -envoyproxy .tools/bin/service_cmd -gatehouse ./$(BIN) $(BENCH_RATELIMIT_FLAGS)

# accesslog: the numbers of docs/PERFORMANCE.md (## accesslog). Query
# latencies on a 10M-row DuckDB file (built once into BENCH_ACCESSLOG_DIR,
# reused after), the redaction / encoding micro benchmarks, then ingest:
# BENCH_ACCESSLOG_INGEST unique entries over ALS gRPC from a separate
# process into a sidecar with its shipped default settings, redaction on,
# BENCH_ACCESSLOG_RUNS times; the last line is the median entries/s.
BENCH_ACCESSLOG_ROWS ?= 10000000
BENCH_ACCESSLOG_DIR ?= /tmp/gatehouse-bench-accesslog
BENCH_ACCESSLOG_INGEST ?= 1000000
BENCH_ACCESSLOG_RUNS ?= 3
.PHONY: bench-accesslog bench-accesslog-ingest
bench-accesslog:
	mkdir -p $(BENCH_ACCESSLOG_DIR)
	$(GO) test -run '^$$' -bench . -benchmem ./accesslog
	GATEHOUSE_BENCH_ROWS=$(BENCH_ACCESSLOG_ROWS) GATEHOUSE_BENCH_DIR=$(BENCH_ACCESSLOG_DIR) \
		$(GO) test -run '^$$' -bench . -benchmem -benchtime 20x -timeout 60m ./accesslog/duckstore
	$(MAKE) --no-print-directory bench-accesslog-ingest
bench-accesslog-ingest:
	mkdir -p $(BENCH_ACCESSLOG_DIR)
	set -o pipefail; $(GO) test -run '^$$' -bench IngestGRPC -benchtime $(BENCH_ACCESSLOG_INGEST)x \
		-count $(BENCH_ACCESSLOG_RUNS) -timeout 60m ./sidecars/accesslog | tee $(BENCH_ACCESSLOG_DIR)/ingest.txt
	@awk -v entries=$(BENCH_ACCESSLOG_INGEST) '/^BenchmarkIngestGRPC/ { \
		for (i = 2; i < NF; i++) { if ($$(i+1) == "entries/s") r[n++] = $$i; if ($$(i+1) == "cpu-ms/1k-entries-incl-close") c[m++] = $$i } } \
		function med(a, k,   i, j, t) { for (i = 1; i < k; i++) for (j = i; j > 0 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t } return k % 2 ? a[int(k/2)] : (a[k/2-1] + a[k/2]) / 2 } \
		END { if (n == 0) { print "no IngestGRPC result"; exit 1 } \
		printf "ingest, median of %d runs of %d unique entries, shipped defaults: %.2f sidecar cpu-ms/1k-entries-incl-close\n", m, entries, med(c, m); \
		printf "ingest, median of %d runs of %d unique entries, shipped defaults: %.0f entries/s\n", n, entries, med(r, n) }' \
		$(BENCH_ACCESSLOG_DIR)/ingest.txt

# controlplane: the numbers of docs/PERFORMANCE.md (## controlplane). The
# compile benchmarks, then `gatehouse controlplane` as its own process with
# BENCH_XDS_SPECS specs and BENCH_XDS_NODES simulated Envoy nodes (one gRPC
# connection and ADS stream each, from xdsbench, a separate process) in 13
# node groups, SotW then delta, for each route layout: scoped (exact hosts,
# every group --scoped-route-groups: one route table per spec) then table
# (a wildcard host per spec: one table per group); BENCH_XDS_FLAGS=
# '-layouts scoped' runs one; BENCH_XDS_FLAGS=-tls serves xDS over mutual
# TLS (a throwaway CA, a client certificate per node group), as deployed.
# It ends with a summary block (p50/p99 per change, control-plane CPU per
# change, RSS and live heap per node, bytes per change per type, route
# bytes per node per change).
BENCH_XDS_SPECS ?= 1000
BENCH_XDS_NODES ?= 2000
BENCH_XDS_FLAGS ?=
.PHONY: bench-xds
bench-xds: build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 10x ./controlplane/compile
	$(GO) build -o .tools/bin/xdsbench ./controlplane/xdsbench
	.tools/bin/xdsbench -gatehouse ./$(BIN) -specs $(BENCH_XDS_SPECS) -nodes $(BENCH_XDS_NODES) -groups 13 $(BENCH_XDS_FLAGS)

# Regenerate the checked-in Envoy bootstraps (the test in cmd/gatehouse keeps them
# current). Each uses mutual TLS toward xDS and the sidecars: dev.json the
# files `gatehouse dev` writes under .gatehouse/pki, the others the node
# certificate of their group under /etc/gatehouse/tls (docs/DEPLOY.md).
.PHONY: deploy-envoy
deploy-envoy: build
	./$(BIN) bootstrap --node-group dev --node-id envoy-dev --xds-server 127.0.0.1:18000 --xds-ca-file .gatehouse/pki/ca.crt --xds-cert-file .gatehouse/pki/envoy-dev.crt --xds-key-file .gatehouse/pki/envoy-dev.key > deploy/envoy/dev.json
	./$(BIN) bootstrap --node-group dev --node-id envoy-compose --xds-server controlplane:18000 --authz-addr authz:9001 --ratelimit-addr ratelimit:8081 --accesslog-addr accesslog:9002 --admin-addr 127.0.0.1:9901 --health-addr 0.0.0.0:9902 --xds-ca-file /etc/gatehouse/tls/ca.crt --xds-cert-file /etc/gatehouse/tls/node.crt --xds-key-file /etc/gatehouse/tls/node.key > deploy/envoy/compose.json
	./$(BIN) bootstrap --node-group us-east-1 --node-id envoy --xds-server gatehouse-controlplane.gatehouse.svc:18000 --admin-addr 127.0.0.1:9901 --health-addr 0.0.0.0:9902 --xds-ca-file /etc/gatehouse/tls/ca.crt --xds-cert-file /etc/gatehouse/tls/node.crt --xds-key-file /etc/gatehouse/tls/node.key > deploy/envoy/us-east-1.json

# Broker: provisions/s through the embedded pipeline (32 concurrent OSB
# clients) and PUT -> last_operation succeeded latency (2 clients).
.PHONY: bench-broker
bench-broker:
	$(GO) test -run '^$$' -bench EmbeddedPipeline -benchmem -benchtime 2000x ./broker -args -broker.clients=32
	$(GO) test -run '^$$' -bench EmbeddedPipeline -benchmem -benchtime 500x ./broker -args -broker.clients=2

# screenshots: the access-log page in headless Chromium, one PNG per state
# (open on 15m, preset, filtered, row detail, zoomed, no token, empty at
# 1024 px), written to screenshots/ (git-ignored) for a reviewer.
.PHONY: screenshots
screenshots:
	rm -rf screenshots && GATEHOUSE_SCREENSHOTS=$(CURDIR)/screenshots $(GO) test -count=1 -run 'TestExplorerPage' ./accesslog/api/
	@ls screenshots/*.png
