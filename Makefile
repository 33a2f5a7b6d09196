# gcnserve: one Go binary that serves a GCN exported to ONNX.
#   make run    serve the bundled model on :9999
#   make test   every test: proto freshness, vet, staticcheck, unit, race, goroutine
#               leaks (goleak), e2e, fuzz, parity, accuracy
#   make tools  grpcurl and ghz into bin/, at the versions go.mod pins
SHELL := /bin/bash
# Go installed the standard way (/usr/local/go) works without a PATH change.
ifeq ($(shell command -v go),)
export PATH := /usr/local/go/bin:$(PATH)
endif
GO ?= go
PYTHON ?= /usr/bin/python3
# The per-user ONNX Runtime cache (scripts/fetch_ort.sh, internal/ortlib.CachePath).
ORT_LIB = $(shell scripts/fetch_ort.sh --print-path)
# Fuzzing is bounded by a count of executions, not a duration: with a
# -fuzztime duration, Go's coordinator can report the deadline itself as a
# failure ("context deadline exceeded": it reads the parent context's error
# before the cancellation reaches the workers' context; CI failed on
# FuzzParseTokenFile this way with no crasher). Counts have no deadline.
FUZZTIME ?= 40000x
# Minimizing a new interesting input is bounded too (60 s by default).
FUZZMINIMIZE ?= 10x

.PHONY: all build run test fuzz proto gen-into check-proto check-fmt check-tidy ort deps deps-run models tools clean

all: build

# What `make test` needs (a superset of deps-run); deps-run: what building and
# running need (curl, gcc for cgo). Each checks first and installs only what is
# missing (apt-get, sudo when not root), or names every missing tool and fails.
deps:
	@scripts/install_deps.sh test

deps-run:
	@scripts/install_deps.sh run

# Idempotent: a cached library is only re-verified (sha256). Cached once per
# user in ${XDG_CACHE_HOME:-~/.cache}/gcnserve/ort/, shared by every clone.
ort: deps-run
	@scripts/fetch_ort.sh

# bin/gcnserve carries the verified ONNX Runtime library (-tags ortembed,
# internal/ortlib): copied alone to another machine it still starts.
# 'go build ./cmd/server' without the tag loads the library from disk.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
GO_LDFLAGS := -X github.com/gcnserve/gcnserve/internal/version.version=$(VERSION)

build: ort
	@scripts/embed_ort.sh
	$(GO) build -tags ortembed -ldflags '$(GO_LDFLAGS)' -o bin/gcnserve ./cmd/server
	$(GO) build -o bin/gcnclient ./cmd/client

run: build
	bin/gcnserve

# Generated code is checked in; `make proto` rewrites it with the generator
# versions pinned by go.mod's tool directives, `check-proto` fails when stale.
PROTOC_PLUGINS = --plugin=protoc-gen-go=bin/protoc-gen-go --plugin=protoc-gen-go-grpc=bin/protoc-gen-go-grpc
TUTORIAL_PKG = github.com/gcnserve/gcnserve/test/e2e/tutorialpb
# Open Inference Protocol v2: go_package .../gen/inferencepb, written under $(GEN)/inferencepb.
GEN_MODULE = github.com/gcnserve/gcnserve/gen

bin/protoc-gen-go bin/protoc-gen-go-grpc: go.mod
	$(GO) build -o bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o bin/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc

proto: deps bin/protoc-gen-go bin/protoc-gen-go-grpc
	@$(MAKE) --no-print-directory gen-into GEN=gen TUT=test/e2e/tutorialpb

gen-into:
	mkdir -p $(GEN) $(TUT)
	protoc -I proto $(PROTOC_PLUGINS) \
	  --go_out=$(GEN) --go_opt=paths=source_relative \
	  --go-grpc_out=$(GEN) --go-grpc_opt=paths=source_relative proto/gcn.proto
	protoc -I test/e2e/testdata $(PROTOC_PLUGINS) \
	  --go_out=$(TUT) --go_opt=paths=source_relative --go_opt=Mgcn.proto=$(TUTORIAL_PKG) \
	  --go-grpc_out=$(TUT) --go-grpc_opt=paths=source_relative --go-grpc_opt=Mgcn.proto=$(TUTORIAL_PKG) \
	  test/e2e/testdata/gcn.proto
	protoc -I proto $(PROTOC_PLUGINS) \
	  --go_out=$(GEN) --go_opt=module=$(GEN_MODULE) \
	  --go-grpc_out=$(GEN) --go-grpc_opt=module=$(GEN_MODULE) proto/inference/grpc_predict_v2.proto

check-proto: deps bin/protoc-gen-go bin/protoc-gen-go-grpc
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(MAKE) --no-print-directory -s gen-into GEN=$$tmp/gen TUT=$$tmp/tut >/dev/null && \
	diff -r gen $$tmp/gen && diff -r test/e2e/tutorialpb $$tmp/tut || \
	{ echo "check-proto: generated code is stale: run 'make proto' and commit" >&2; exit 1; }

# Every test. Tests that need ONNX Runtime or torch fail (never skip) under
# CI=true; Cora is in testdata/. The race detector covers the concurrency tests.
test: deps ort check-proto check-fmt check-tidy
	$(GO) vet ./...
	$(MAKE) --no-print-directory staticcheck
	$(GO) test -race -count=1 -timeout 20m ./...
	@# Allocation counts are only meaningful without -race.
	$(GO) test -count=1 -run Allocations ./internal/graphwire
	$(MAKE) --no-print-directory fuzz

# gofmt over the tree (no git needed: works on an unpacked tarball too),
# generated code excepted.
check-fmt:
	@unformatted=$$(find . \( -path ./gen -o -path ./.git -o -path ./bin -o -path ./.cache -o -name tutorialpb \) -prune \
	  -o -name '*.go' -print | xargs -r gofmt -l); \
	  [ -z "$$unformatted" ] || { echo "gofmt needed: $$unformatted" >&2; exit 1; }

check-tidy:
	@$(GO) mod tidy -diff || { echo "check-tidy: go.mod or go.sum is not tidy: run 'go mod tidy' and commit" >&2; exit 1; }

# Brief fuzzing of everything that takes untrusted bytes; the committed seed
# corpus also runs in every plain `go test`.
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzDecode$$ -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/graphwire
	$(GO) test -run=NONE -fuzz=FuzzDecodeRouted -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/graphwire
	$(GO) test -run=NONE -fuzz=FuzzReadInitializers -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./gcn
	$(GO) test -run=NONE -fuzz=FuzzParseTokenFile -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/auth
	$(GO) test -run=NONE -fuzz=FuzzParseBearer -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/auth
	$(GO) test -run=NONE -fuzz=FuzzParseVersion -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/serving
	$(GO) test -run=NONE -fuzz=FuzzDecodeJSON -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/transport/httpjson
	@# The HTTP prologue (content decoding, limits) and the JSON token count.
	$(GO) test -run=NONE -fuzz=FuzzReadBody -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/transport/httpx
	$(GO) test -run=NONE -fuzz=FuzzCountJSON -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/transport/httpx
	@# Stored graphs: the store's delta records, and deltas applied to a graph.
	$(GO) test -run=NONE -fuzz=FuzzDecodeDelta$$ -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/graphs
	$(GO) test -run=NONE -fuzz=FuzzApplyDecodedDelta -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/graphs
	@# Stored-graph requests counted (gRPC wire bytes, JSON bodies) before decoding.
	for f in FuzzCount FuzzCountJSONFields; do \
	  $(GO) test -run=NONE -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/wirecount || exit 1; done
	@# Open Inference Protocol: gRPC request decoding, REST bodies, JSON tensor data.
	for f in FuzzModelInferRequest FuzzRESTInferBody FuzzTensorData FuzzCountInferRequest; do \
	  $(GO) test -run=NONE -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./internal/transport/oip || exit 1; done

# The alert rules parse and fire as their unit tests expect (promtool is in
# Debian's prometheus package).
.PHONY: check-alerts
check-alerts:
	promtool check rules deploy/monitoring/alerts.yaml
	promtool test rules deploy/monitoring/alerts_test.yaml

# Regenerate the bundled models, their golden fixtures and the example
# request with scripts/export_onnx.py (Debian's python3-torch).
models: deps
	$(PYTHON) scripts/export_onnx.py --karate --out model/karate.onnx \
	  --fixtures model/testdata/karate --example-request examples/karate.json
	$(PYTHON) scripts/export_onnx.py --data testdata/cora --out model/cora.onnx

# Regenerate the model repository test fixtures (distinct karate versions, a
# Cora-shaped model, a contract-breaking model) used by internal/modelrepo and
# test/reload.
.PHONY: repo-fixtures
repo-fixtures:
	internal/modelrepo/testdata/gen.sh

# Load test: gcnserve against the Python reference server (bench/pyserver.py)
# and a no-inference Go server; writes docs/BENCHMARKS.md. Under 10 minutes;
# BENCH_QUICK=1 takes under 2. See bench/run.sh for the other knobs.
# Phony: the bench/ directory would otherwise make it always up to date.
.PHONY: bench
bench: deps build
	bench/run.sh

# Command-line gRPC tools the README uses, built from the versions pinned by
# go.mod's tool directives (go get -tool ...@vX to change one).
tools: bin/grpcurl bin/ghz

bin/grpcurl: go.mod
	$(GO) build -o $@ github.com/fullstorydev/grpcurl/cmd/grpcurl

bin/ghz: go.mod
	$(GO) build -o $@ github.com/bojand/ghz/cmd/ghz

# staticcheck (version pinned) over every package, test files included, with
# its default checks; part of 'make test'. A false positive is silenced on its
# line (//lint:ignore CHECK reason), never by dropping a check here.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
.PHONY: staticcheck
staticcheck:
	$(GO) run $(STATICCHECK) ./...

# In-process library vs gRPC over loopback (docs/BENCHMARKS.md, last section).
# Stored graphs (docs/STATEFUL.md): 100k nodes / 500k edges / 16 features,
# score p50 and server CPU vs a full ProcessGraph, deltas/s under c=8 scores,
# exactness; the last line is the summary (bench/graph.sh).
.PHONY: bench-graph
bench-graph: deps build
	bench/graph.sh

.PHONY: bench-inprocess
bench-inprocess: ort
	$(GO) test -run NONE -bench . -benchtime 4s -count 3 ./bench/inprocess

clean:
	rm -rf bin .cache internal/ortlib/libonnxruntime.so

# Container image (Dockerfile) with docker or podman; IMAGE=name:tag.
# scripts/build_image.sh --smoke also runs it locked down against the golden scores.
.PHONY: image image-smoke
image:
	scripts/build_image.sh

image-smoke:
	scripts/build_image.sh --smoke

# Every manifest under deploy/ through a real kube-apiserver (dry-run=server,
# validate=strict) with KServe's CRDs; builds and caches the API server once
# (~9 min). Not part of 'make test'.
.PHONY: k8s-check
k8s-check:
	scripts/k8s_check.sh

# deploy/kubernetes (lab overlay) on a real one-node cluster on this machine
# (etcd, control plane and kubelet built like k8s-check's, containerd, CNI
# bridge): rollout, pod loss, PDB, readiness, security context, model
# publish, under load; torn down at the end. Root; not in CI (deploy/README.md).
.PHONY: k8s-e2e
k8s-e2e:
	scripts/k8s_e2e.sh

# Incremental inference (internal/incremental): edge and feature updates
# streamed through per-layer state while scores run, on synthetic power-law
# graphs of ogbn-arxiv's size and of 100k nodes; exactness checked against
# recomputation. Last line: bench-incremental: updates_per_s=... (docs/INCREMENTAL.md).
BENCHINCR_FLAGS ?= --duration 20s
.PHONY: bench-incremental
bench-incremental:
	$(GO) run ./cmd/benchincr $(BENCHINCR_FLAGS)
