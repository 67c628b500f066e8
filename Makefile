# zoomarchive. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
NATSCLI_VERSION := v0.5.0
STAGES := $(notdir $(patsubst %/main.go,%,$(wildcard stages/*/main.go)))
FUZZTIME ?= 10s
export CGO_ENABLED := 0
# Images of the broker, the stages and the operator's nats console (natscli),
# FROM scratch; docker when its engine answers, podman otherwise (make images
# ENGINE=podman to choose).
IMAGES := broker $(STAGES) nats
ENGINE ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
TAG ?= latest
BINDIR ?= bin
# The release: VERSION, and the commit it was built from when git knows it
# (+dirty when the working copy differs); every program's --version and the
# digest show it.
VERSION := $(shell v=$$(cat VERSION); c=$$(git rev-parse --short=7 HEAD 2>/dev/null) && v=$$v+$$c && \
	{ git diff --quiet HEAD 2>/dev/null || v=$$v.dirty; }; echo $$v)
LDFLAGS := -s -w -X zoomarchive/shared/config.Version=$(VERSION)
# make deploy / make rollback: the droplet (user@address), e.g. HOST=tuta@203.0.113.7.
HOST ?=
# The stack test's tools, from the Go module proxy.
COMPOSE_VERSION := v2.40.3
PEBBLE_VERSION := v2.10.3
TFLINT_VERSION := v0.64.0

.PHONY: help build images test check fuzz bench soak run dev demo tools stack clean deploy rollback version

help:
	@echo "make build   static binaries in bin/: broker and the stages ($(STAGES))"
	@echo "make run     the embedded broker and every stage, settings from .env"
	@echo "make dev     the same on loopback against local stand-ins of Zoom and Google"
	@echo "make demo    a recording archived before your eyes, against the stand-ins"
	@echo "make images  container images of the broker and the stages (docker or podman)"
	@echo "make deploy HOST=user@address    build for the droplet and install or update it"
	@echo "make rollback HOST=user@address  back to the release before the last deploy"
	@echo "make version the release these sources build"
	@echo "make test    formatting, vet, all tests (real nats-server, natscli), the deployment"
	@echo "             checks and the compose stack on Podman, short fuzz runs"
	@echo "make stack   only the compose stack test (installs podman & co. with apt if missing)"
	@echo "make bench   the benchmarks whose numbers docs/measurements.md reports"
	@echo "make fuzz FUZZTIME=10m   longer fuzz runs"
	@echo "make soak SOAK=30m       the chaos soak (kills, faults, late files) for that long;"
	@echo "                         SOAK_SEED=N replays a run (make test runs 2 minutes of it)"

# OUT: where build writes (deploy/ship builds for the droplet into its own folder).
OUT ?= bin
build:
	@mkdir -p $(OUT)
	$(GO) build -trimpath -ldflags='$(LDFLAGS)' -o $(OUT)/broker ./nats/cmd/broker
	@for s in $(STAGES); do echo "$(GO) build -o $(OUT)/$$s ./stages/$$s"; \
		$(GO) build -trimpath -ldflags='$(LDFLAGS)' -o $(OUT)/$$s ./stages/$$s || exit 1; done

version:
	@echo $(VERSION)

# Build for the droplet's architecture here (Go, no Docker needed), ship to HOST
# over SSH, install and check there (deploy/ship; docs/install.md, docs/upgrading.md).
deploy:
	@[ -n "$(HOST)" ] || { echo "make deploy HOST=user@address (terraform output ssh)"; exit 2; }
	GO=$(GO) NATSCLI_VERSION=$(NATSCLI_VERSION) deploy/ship $(HOST)
rollback:
	@[ -n "$(HOST)" ] || { echo "make rollback HOST=user@address"; exit 2; }
	deploy/ship --rollback $(HOST)

# Each image holds one binary (as /app) and an empty /data for the broker's volume.
# The stack test packs its own programs from another folder (IMAGES=... BINDIR=...).
images: build .tools/nats
	@for n in $(IMAGES); do \
		src=$(BINDIR)/$$n; [ $$n = nats ] && src=.tools/nats; \
		rm -rf .images/$$n && mkdir -p .images/$$n/data && cp $$src .images/$$n/app && \
		echo "$(ENGINE) build localhost/zoomarchive/$$n:$(TAG)" && \
		$(ENGINE) build -q -f deploy/Containerfile -t localhost/zoomarchive/$$n:$(TAG) .images/$$n >/dev/null || exit 1; \
	done

# The compose stack on Podman with Pebble and the stand-ins (deploy/stack).
stack: tools
	COMPOSE_VERSION=$(COMPOSE_VERSION) PEBBLE_VERSION=$(PEBBLE_VERSION) GO=$(GO) deploy/stack/run

# natscli, pinned, for the operator-command tests and for you; tflint for the
# Terraform checks; the Debian packages of the deployment checks (deploy/debs).
tools: .tools/nats .tools/tflint
	@deploy/debs
.tools/nats:
	GOBIN=$(CURDIR)/.tools $(GO) install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)
.tools/tflint:
	cd / && GOBIN=$(CURDIR)/.tools $(GO) install github.com/terraform-linters/tflint@$(TFLINT_VERSION)

check:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags stack ./deploy/stack

# The end-to-end tests run on their own: a three-node cluster and five processes
# want the two cores to themselves, not shared with the other packages' tests.
test: tools check
	CGO_ENABLED=1 $(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e$$)
	$(GO) test -count=1 -timeout 20m ./e2e
	$(MAKE) stack
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

# The chaos soak of e2e/soak_test.go for SOAK; it prints its seed (SOAK_SEED replays).
SOAK ?= 30m
soak:
	SOAK_DURATION=$(SOAK) $(GO) test -count=1 -run '^TestSoak$$' -timeout 3h -v ./e2e

# Each fuzz target on its own (go test -fuzz takes one at a time).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./stages/hook
	$(GO) test -run '^$$' -fuzz '^FuzzWebhook$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./stages/hook
	$(GO) test -run '^$$' -fuzz '^FuzzRecordingPayload$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./shared/events
	$(GO) test -run '^$$' -fuzz '^FuzzDownloadHost$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./stages/fetch
	$(GO) test -run '^$$' -fuzz '^FuzzMeetingPath$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./stages/fetch
	$(GO) test -run '^$$' -fuzz '^FuzzCleanName$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./stages/upload
	$(GO) test -run '^$$' -fuzz '^FuzzTranscript$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./stages/upload
	$(GO) test -run '^$$' -fuzz '^FuzzLayoutTemplate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./stages/upload

bench:
	$(GO) test -run '^$$' -bench '^BenchmarkHookSaturation$$' -benchtime 30000x -count 3 ./stages/hook
	$(GO) test -run '^$$' -bench '^BenchmarkHookLatencyAt1000$$' -benchtime 10x -count 3 ./stages/hook
	$(GO) test -run '^$$' -bench '^BenchmarkHookUnderFlood$$' -benchtime 1x -count 3 ./stages/hook
	$(GO) test -run '^$$' -bench '^BenchmarkFetch$$' -benchtime 1x -count 3 ./stages/fetch
	$(GO) test -run '^$$' -bench '^BenchmarkUpload$$' -benchtime 1x -count 3 ./stages/upload
	$(GO) test -run '^$$' -bench '^BenchmarkPipeline$$' -benchtime 1x -count 3 -timeout 30m ./e2e
	$(GO) test -run '^$$' -bench '^BenchmarkCPUPerGiB$$' -benchtime 1x -count 3 -timeout 30m ./e2e
	$(GO) test -run '^$$' -bench '^(BenchmarkResumeCost|BenchmarkIdleFootprint|BenchmarkRecovery)$$' -benchtime 1x -count 2 -timeout 30m ./e2e

run: build
	./deploy/run

# For a first look: every stage on loopback against local stand-ins of Zoom and
# Google (shared/standins); the hook answers on 127.0.0.1:8080. .env is not read.
dev: build
	$(GO) build -o bin/dev/standins ./shared/standins/cmd/standins
	ZOOMARCHIVE_DEV=1 ./deploy/run

# The stand-ins deliver a rehearsal of a few hundred MB to the hook and show it go
# through every stage into Drive, the mail and Zoom's trash; about half a minute.
demo: build
	$(GO) build -o bin/dev/standins ./shared/standins/cmd/standins
	ZOOMARCHIVE_DEMO=1 ./deploy/run

clean:
	rm -rf bin .tools .images
