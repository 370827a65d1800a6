# Furrow's make targets. The two that matter on a fresh machine:
#   make run    start Furrow (embedded JetStream, the three services, SQLite)
#   make test   run every module's tests, plus the contract checks
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

BIN      := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

# Pinned tool versions (installed into ./bin by `make tools`).
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPC_GATEWAY_VERSION       := v2.34.0
GRPCURL_VERSION            := v1.9.4
NATSCLI_VERSION            := v0.5.0

MODULES   = $(shell go list -f '{{.Dir}}' -m)
PKGS      = $(addsuffix /...,$(MODULES))
GO_TEST_FLAGS ?= -race -count=1 -timeout 12m

.PHONY: help run build build-services test faults chromium postgres test-short vet proto proto-check lint breaking bench bench-scale tools cli-tools up down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

run: build ## start Furrow on its embedded default (furrow dev)
	$(BIN)/furrow dev $(ARGS)

build: ## build the furrow binary into ./bin
	go build -o $(BIN)/furrow ./cmd/furrow

build-services: ## build the three production service binaries into ./bin (deploy/README.md)
	go build -o $(BIN)/ ./services/procurement/cmd/procurement \
		./services/brand-incubation/cmd/brand-incubation ./services/farmer-ledger/cmd/farmer-ledger

test: proto-check vet cli-tools ## run every module's tests (component, system, docs, browser) and contract checks
	@# cmd/furrow/doctest runs the shell blocks of README.md and docs/*.md with the
	@# grpcurl and nats that cli-tools installs into ./bin (docs/ENGINEERING.md).
	@# The projection stores' contract suite runs on SQLite and on PostgreSQL:
	@# use FURROW_TEST_POSTGRES_DSN if set, else start (installing if needed) a local one.
	@# The operators walkthrough inspects a read model with the sqlite3 shell.
	@# The console's browser test drives Chromium: FURROW_CHROMIUM if set, else
	@# scripts/chromium.sh finds (installing if needed) Debian's chromium. Its
	@# screenshots go to FURROW_ARTEFACTS (default .artefacts/, not committed).
	command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq sqlite3; }
	dsn="$${FURROW_TEST_POSTGRES_DSN:-}"; if [ -z "$$dsn" ]; then dsn="$$(scripts/postgres.sh)"; fi; \
	chromium="$${FURROW_CHROMIUM:-}"; if [ -z "$$chromium" ]; then chromium="$$(scripts/chromium.sh)"; fi; \
	FURROW_TEST_POSTGRES_DSN="$$dsn" FURROW_CHROMIUM="$$chromium" FURROW_ARTEFACTS="$${FURROW_ARTEFACTS:-$(CURDIR)/.artefacts}" \
	GO_TEST_FLAGS="$(GO_TEST_FLAGS)" scripts/gotest.sh

faults: ## TestFaultsWithOracle on three seeds (make test runs it once, seed 1)
	dsn="$${FURROW_TEST_POSTGRES_DSN:-}"; if [ -z "$$dsn" ]; then dsn="$$(scripts/postgres.sh)"; fi; \
	for seed in 1 2 3; do \
		FURROW_TEST_POSTGRES_DSN="$$dsn" FURROW_FAULTS_SEED=$$seed go test -count=1 -timeout 10m -run TestFaultsWithOracle -v ./cmd/furrow/prodtest; \
	done

chromium: ## find (installing it if missing) Chromium for the browser tests and print its path
	@scripts/chromium.sh

postgres: ## start the local test PostgreSQL (installing it if missing) and print its DSN
	@scripts/postgres.sh

test-short: ## unit tests only
	go test -short $(PKGS)

vet: ## go vet every module
	go vet $(PKGS)

$(BIN)/buf:
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(BIN)/protoc-gen-openapiv2:
	GOBIN=$(BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
$(BIN)/grpcurl:
	GOBIN=$(BIN) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
$(BIN)/nats:
	GOBIN=$(BIN) go install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-openapiv2 ## install the pinned code generators into ./bin

cli-tools: $(BIN)/grpcurl $(BIN)/nats ## install grpcurl and the nats CLI into ./bin

proto: tools ## regenerate the Go code and the OpenAPI document from proto/
	cd proto && buf lint && buf generate

proto-check: tools ## fail when buf lint fails or the committed generated code is stale
	scripts/proto-check.sh

breaking: tools ## buf breaking against main
	cd proto && buf breaking --against '../.git#branch=main,subdir=proto'

lint: vet proto-check breaking ## all static checks

bench: ## benchmarks: raw JetStream baseline and end-to-end rates, with ratios
	scripts/bench.sh

bench-scale: ## scale run, not in test or CI (FURROW_SCALE_FARMERS, FURROW_SCALE_EVENTS; default 1M, 10M)
	scripts/bench-scale.sh

up: ## production shape with docker compose: 3 NATS nodes, PostgreSQL, the services (deploy/README.md)
	docker compose up --build

down: ## stop what `make up` started (data kept; docker compose down -v deletes it)
	docker compose down

clean:
	rm -rf $(BIN) .furrow .artefacts
