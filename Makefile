# hpcrun: one static binary, no cgo.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
GOFLAGS ?= -trimpath
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     ?= bin/hpcrun
# The image unpacker, a program of its own that hpcrun embeds (see
# cmd/hpcrun-unpack for why).
PAYLOAD := cmd/hpcrun/internal/unpacker/payload/hpcrun-unpack

.PHONY: all build test unit e2e vet bench install uninstall clean demo

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(dir $(PAYLOAD)).new ./cmd/hpcrun-unpack
	mv -f $(dir $(PAYLOAD)).new $(PAYLOAD)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hpcrun

# The whole suite: vet, formatting, unit tests and the end-to-end tests,
# which run the built binary as an unprivileged user.
test: vet
	scripts/test-deps.sh
	$(GO) test -count=1 ./...

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e:
	scripts/test-deps.sh
	$(GO) test -count=1 -v ./e2e/

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Warm start-up against bwrap, then a cold start (an unpack) against tar and
# umoci; both side by side in interleaved rounds, reported as ratios.
bench: build
	bench/startup.sh --hpcrun $(BIN)
	bench/coldstart.sh --hpcrun $(BIN)

demo: build
	examples/demo.sh

install: build
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 bin/hpcrun $(DESTDIR)$(BINDIR)/hpcrun

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/hpcrun

clean:
	rm -rf bin $(PAYLOAD)
