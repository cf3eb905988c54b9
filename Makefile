# hpcrun: one static binary, no cgo.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR  ?= $(DATADIR)/man
# The modulefiles, Lmod's (Lua) and a Tcl one, go to separate trees, so that
# no MODULEPATH dir holds two hpcrun/VERSION files. LMODDIR= and MODULEDIR=
# put them in the site's module trees instead.
LMODDIR   ?= $(DATADIR)/lmod/modulefiles
MODULEDIR ?= $(DATADIR)/modulefiles
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
MODVERSION ?= $(VERSION)
GO      ?= go
GOFLAGS ?= -trimpath
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     ?= bin/hpcrun
# The image unpacker, a program of its own that hpcrun embeds (see
# cmd/hpcrun-unpack for why).
PAYLOAD := cmd/hpcrun/internal/unpacker/payload/hpcrun-unpack

.PHONY: all build test unit e2e vet bench install install-files uninstall clean demo

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(dir $(PAYLOAD)).new ./cmd/hpcrun-unpack
	mv -f $(dir $(PAYLOAD)).new $(PAYLOAD)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hpcrun

# The whole suite: vet, formatting, unit tests and the end-to-end tests,
# which run the built binary as an unprivileged user. HPCRUN_TEST_LONG=1
# adds the long fault tests, which take the e2e package past go test's
# default limit of 10 minutes.
TESTTIMEOUT ?= 60m

test: vet
	scripts/test-deps.sh
	$(GO) test -count=1 -timeout $(TESTTIMEOUT) ./...

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e:
	scripts/test-deps.sh
	$(GO) test -count=1 -timeout $(TESTTIMEOUT) -v ./e2e/

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# hpcrun against its peers in one table (bench/bench.sh): warm start against
# bwrap, ch-run and runc, cold start against tar, pigz and umoci, peak RSS,
# concurrent cold starts; interleaved rounds, medians and ratios. As root it
# builds the demo images and installs the peers when missing. BENCH_QUICK=1
# takes fewer rounds. bench/startup.sh and bench/coldstart.sh run parts alone.
bench: build
	bench/bench.sh --hpcrun $(BIN)

demo: build
	examples/demo.sh

# install builds $(BIN) and installs it; install-files installs the $(BIN)
# that is there, without building. Both write the modulefiles, with the
# final paths (PREFIX's, never DESTDIR's) filled in:
#   $(BINDIR)/hpcrun
#   $(LMODDIR)/hpcrun/$(MODVERSION).lua
#   $(MODULEDIR)/hpcrun/$(MODVERSION)
install: build
	$(INSTALL_FILES)

install-files:
	$(INSTALL_FILES)

# The paths go into the modulefiles as they are, inside Lua and Tcl strings
# and sed's replacement text: only plain characters are allowed.
define INSTALL_FILES
@for p in '$(PREFIX)' '$(BINDIR)' '$(MANDIR)' '$(LMODDIR)' '$(MODULEDIR)'; do \
	case "$$p" in /*) ;; *) echo "install: $$p: not an absolute path" >&2; exit 1;; esac; \
	case "$$p" in *[!A-Za-z0-9._/+,=@~-]*) echo "install: $$p: only letters, digits and ._/+,=@~- may be in an install path" >&2; exit 1;; esac; \
done; \
case '$(MODVERSION)' in ''|*[!A-Za-z0-9._+,=@~-]*) echo "install: MODVERSION='$(MODVERSION)': only letters, digits and ._+,=@~- may be in it" >&2; exit 1;; esac; \
[ -f '$(BIN)' ] || { echo "install: no $(BIN): make build first, or make install" >&2; exit 1; }
install -d '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(LMODDIR)/hpcrun' '$(DESTDIR)$(MODULEDIR)/hpcrun'
install -m 0755 '$(BIN)' '$(DESTDIR)$(BINDIR)/hpcrun'
$(call modulefile,modulefiles/hpcrun.lua.in,$(DESTDIR)$(LMODDIR)/hpcrun/$(MODVERSION).lua)
$(call modulefile,modulefiles/hpcrun.tcl.in,$(DESTDIR)$(MODULEDIR)/hpcrun/$(MODVERSION))
endef

# $(call modulefile,TEMPLATE,DEST): DEST is TEMPLATE with the paths and the
# version filled in, mode 0644, replaced whole.
modulefile = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@MANDIR@|$(MANDIR)|g' \
	-e 's|@VERSION@|$(MODVERSION)|g' '$(1)' > '$(2).new' && chmod 0644 '$(2).new' && mv -f '$(2).new' '$(2)'

# Removes what install wrote (for this MODVERSION), then the directories
# that leaves empty: the modulefiles' hpcrun/ dirs, and their parents and
# BINDIR up to PREFIX; in the shared /usr and /usr/local, only the parents
# below share/.
uninstall:
	rm -f '$(DESTDIR)$(BINDIR)/hpcrun' '$(DESTDIR)$(LMODDIR)/hpcrun/$(MODVERSION).lua' \
		'$(DESTDIR)$(MODULEDIR)/hpcrun/$(MODVERSION)'
	@for d in '$(DESTDIR)$(LMODDIR)/hpcrun' '$(DESTDIR)$(MODULEDIR)/hpcrun'; do \
		[ ! -d "$$d" ] || rmdir --ignore-fail-on-non-empty "$$d"; \
	done; \
	case '$(PREFIX)' in \
	/usr|/usr/|/usr/local|/usr/local/) top='$(DESTDIR)$(DATADIR)'; set -- '$(DESTDIR)$(LMODDIR)' '$(DESTDIR)$(MODULEDIR)';; \
	*) top='$(DESTDIR)$(PREFIX)'; set -- '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(LMODDIR)' '$(DESTDIR)$(MODULEDIR)';; \
	esac; \
	for d; do \
		while case "$$d" in "$$top"/?*) true;; *) false;; esac && \
			{ [ ! -e "$$d" ] || rmdir "$$d" 2>/dev/null; }; do d=$${d%/*}; done; \
	done

clean:
	rm -rf bin $(PAYLOAD)
