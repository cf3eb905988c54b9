# hpcrun: one static binary, no cgo.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR  ?= $(DATADIR)/man
# Where bash-completion, zsh and fish look for completions under a prefix.
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR  ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
# The example site config goes here, not to /etc: hpcrun reads
# /etc/hpcrun/config.yaml whatever the prefix, and the admin writes it.
DOCDIR  ?= $(DATADIR)/doc/hpcrun
# The modulefiles, Lmod's (Lua) and a Tcl one, go to separate trees, so that
# no MODULEPATH dir holds two hpcrun/VERSION files. LMODDIR= and MODULEDIR=
# put them in the site's module trees instead.
LMODDIR   ?= $(DATADIR)/lmod/modulefiles
MODULEDIR ?= $(DATADIR)/modulefiles
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
MODVERSION ?= $(VERSION)
GO      ?= go
GOFLAGS ?= -trimpath
LDFLAGS := -s -w -X github.com/hpcrun/hpcrun/cmd/hpcrun/internal/first.Version=$(VERSION)
BIN     ?= bin/hpcrun
# The image unpacker, a program of its own that hpcrun embeds (see
# cmd/hpcrun-unpack for why).
PAYLOAD := internal/unpacker/payload/hpcrun-unpack
# make docs: the man pages and completion scripts, laid out as PREFIX/share
# is, and the hpcrun built with -tags gendocs that writes them.
GEN     ?= bin/share
GENDOCS ?= bin/hpcrun-gendocs
# The man pages' date: the last commit's, so that they build the same.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
# make dist: $(DISTDIR)/hpcrun-VERSION-linux-GOARCH.tar.gz (make dist
# GOARCH=arm64 builds for another architecture).
GOARCH  ?= $(shell $(GO) env GOARCH)
DISTDIR ?= dist
DIST    := hpcrun-$(VERSION)-linux-$(GOARCH)

.PHONY: all build docs test unit e2e e2e-slurm-taskcgroup e2e-kernsim vet fuzz bench install install-files uninstall dist clean demo

all: build docs

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
	$(MAKE) fuzz

# Each fuzz target for a count of runs, about 20 s on a 2-CPU machine (make
# test), not a duration: a -fuzztime duration's deadline races Go's fuzzing
# coordinator (golang/go#75804, fixed in Go 1.27), which now and then fails
# a clean run with a bare "context deadline exceeded". FUZZTIME=10m runs
# each for that long instead, a longer hunt. New crashers land in the
# package's testdata/fuzz/, where the plain test run replays them from then
# on.
FUZZTIME ?=
FUZZ_TARGETS := ./unpack/source:FuzzOpenArchive:45000x ./unpack/source:FuzzResolve:10000x \
	./unpack/cache:FuzzApplyLayer:14000x ./gpu:FuzzParseLdCache:1200000x \
	./runtime:FuzzParseState:600000x ./runtime:FuzzParsePaused:600000x ./runtime:FuzzParseExit:750000x \
	./internal/squashfs:FuzzOpen:300000x
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${rest#*:}; \
		if [ -n "$(FUZZTIME)" ]; then budget=$(FUZZTIME); fi; \
		echo "fuzz $$name ($$pkg) for $$budget"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $$budget -fuzzminimizetime 1s "$$pkg"; \
	done

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e:
	scripts/test-deps.sh
	$(GO) test -count=1 -timeout $(TESTTIMEOUT) -v ./e2e/

# The Slurm and PBS end-to-end tests again under task/cgroup with
# ConstrainRAMSpace=yes (the tests' Slurm is task/none otherwise); the stock
# config comes back afterwards, whether the tests pass or not.
e2e-slurm-taskcgroup:
	scripts/test-deps.sh
	TASKPLUGIN=cgroup scripts/slurm-up.sh
	TASKPLUGIN=cgroup $(GO) test -count=1 -timeout $(TESTTIMEOUT) -v -run 'Slurm|PBS' ./e2e/; \
		rc=$$?; scripts/slurm-up.sh >/dev/null && exit $$rc

# The end-to-end suite as on an older kernel: under kernsim (see
# ../shared/tools), every syscall newer than KERNEL fails with ENOSYS, for
# go test, hpcrun and the jobs. 4.18 is RHEL/Rocky 8, 5.4 Ubuntu 20.04,
# 5.14 RHEL/Rocky 9. The Slurm daemons and munged start outside it first
# (a daemon started under it would keep its filter), and the tests use
# that cluster as it is (HPCRUN_TEST_SLURM_RUNNING=1). As root.
KERNEL  ?= 4.18
KERNSIM ?= kernsim
e2e-kernsim:
	scripts/test-deps.sh
	scripts/slurm-up.sh
	HPCRUN_TEST_SLURM_RUNNING=1 $(KERNSIM) $(KERNEL) -- $(GO) test -count=1 -timeout $(TESTTIMEOUT) -v ./e2e/

vet:
	$(GO) vet ./...
	$(GO) vet -tags gendocs ./cmd/hpcrun
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

# The man pages, hpcrun(1) and hpcrun-COMMAND(1), and the bash, zsh and fish
# completion scripts, from the command tree, by an hpcrun built for this
# machine with cmd/hpcrun/gendocs.go (-tags gendocs), which release builds
# leave out: cobra/doc and go-md2man would slow every start. The scripts
# are what `hpcrun completion SHELL` prints.
docs:
	CGO_ENABLED=0 GOOS= GOARCH= $(GO) build $(GOFLAGS) -tags gendocs -ldflags '-X github.com/hpcrun/hpcrun/cmd/hpcrun/internal/first.Version=$(VERSION)' -o $(GENDOCS) ./cmd/hpcrun
	rm -rf '$(GEN).new'
	$(if $(SOURCE_DATE_EPOCH),SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH)) $(GENDOCS) __gendocs '$(GEN).new'
	rm -rf '$(GEN)' && mv '$(GEN).new' '$(GEN)'

# install builds $(BIN) and the docs and installs them; install-files
# installs the $(BIN) and $(GEN) that are there, without building. Both
# write the modulefiles, with the final paths (PREFIX's, never DESTDIR's)
# filled in:
#   $(BINDIR)/hpcrun
#   $(MANDIR)/man1/hpcrun.1, hpcrun-COMMAND.1, ...
#   $(BASHCOMPDIR)/hpcrun, $(ZSHCOMPDIR)/_hpcrun, $(FISHCOMPDIR)/hpcrun.fish
#   $(LMODDIR)/hpcrun/$(MODVERSION).lua
#   $(MODULEDIR)/hpcrun/$(MODVERSION)
#   $(DOCDIR)/config.yaml.example (never /etc/hpcrun/config.yaml)
install: build docs
	$(INSTALL_FILES)

install-files:
	$(INSTALL_FILES)

# The paths go into the modulefiles as they are, inside Lua and Tcl strings
# and sed's replacement text: only plain characters are allowed.
define INSTALL_FILES
@for p in '$(PREFIX)' '$(BINDIR)' '$(MANDIR)' '$(LMODDIR)' '$(MODULEDIR)' \
	'$(BASHCOMPDIR)' '$(ZSHCOMPDIR)' '$(FISHCOMPDIR)' '$(DOCDIR)'; do \
	case "$$p" in /*) ;; *) echo "install: $$p: not an absolute path" >&2; exit 1;; esac; \
	case "$$p" in *[!A-Za-z0-9._/+,=@~-]*) echo "install: $$p: only letters, digits and ._/+,=@~- may be in an install path" >&2; exit 1;; esac; \
done; \
case '$(MODVERSION)' in ''|*[!A-Za-z0-9._+,=@~-]*) echo "install: MODVERSION='$(MODVERSION)': only letters, digits and ._+,=@~- may be in it" >&2; exit 1;; esac; \
[ -f '$(BIN)' ] || { echo "install: no $(BIN): make build first, or make install" >&2; exit 1; }; \
[ -f '$(GEN)/man/man1/hpcrun.1' ] || { echo "install: no man pages in $(GEN): make docs first, or make install" >&2; exit 1; }
install -d '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(LMODDIR)/hpcrun' '$(DESTDIR)$(MODULEDIR)/hpcrun' '$(DESTDIR)$(MANDIR)/man1' \
	'$(DESTDIR)$(BASHCOMPDIR)' '$(DESTDIR)$(ZSHCOMPDIR)' '$(DESTDIR)$(FISHCOMPDIR)' '$(DESTDIR)$(DOCDIR)'
install -m 0755 '$(BIN)' '$(DESTDIR)$(BINDIR)/hpcrun'
install -m 0644 '$(GEN)'/man/man1/hpcrun*.1 '$(DESTDIR)$(MANDIR)/man1/'
install -m 0644 '$(GEN)/bash-completion/completions/hpcrun' '$(DESTDIR)$(BASHCOMPDIR)/hpcrun'
install -m 0644 '$(GEN)/zsh/site-functions/_hpcrun' '$(DESTDIR)$(ZSHCOMPDIR)/_hpcrun'
install -m 0644 '$(GEN)/fish/vendor_completions.d/hpcrun.fish' '$(DESTDIR)$(FISHCOMPDIR)/hpcrun.fish'
install -m 0644 examples/config.yaml '$(DESTDIR)$(DOCDIR)/config.yaml.example'
$(call modulefile,modulefiles/hpcrun.lua.in,$(DESTDIR)$(LMODDIR)/hpcrun/$(MODVERSION).lua,$(PREFIX),$(BINDIR),$(MANDIR))
$(call modulefile,modulefiles/hpcrun.tcl.in,$(DESTDIR)$(MODULEDIR)/hpcrun/$(MODVERSION),$(PREFIX),$(BINDIR),$(MANDIR))
endef

# $(call modulefile,TEMPLATE,DEST,PREFIX,BINDIR,MANDIR): DEST is TEMPLATE
# with the paths and the version filled in, mode 0644, replaced whole.
# make dist gives empty paths, which the modulefiles then find themselves.
modulefile = sed -e 's|@PREFIX@|$(3)|g' -e 's|@BINDIR@|$(4)|g' -e 's|@MANDIR@|$(5)|g' \
	-e 's|@VERSION@|$(MODVERSION)|g' '$(1)' > '$(2).new' && chmod 0644 '$(2).new' && mv -f '$(2).new' '$(2)'

# Removes what install wrote (for this MODVERSION; the man pages are
# hpcrun.1 and hpcrun-*.1, whatever commands this version has), then the
# directories that leaves empty: the modulefiles' hpcrun/ dirs and
# DOCDIR, and their parents, BINDIR, man1 and the completion dirs up to
# PREFIX; in the shared /usr and /usr/local, only hpcrun's own dirs and the
# module trees' parents below share/, never the man and completion dirs
# that other packages use too.
uninstall:
	rm -f '$(DESTDIR)$(BINDIR)/hpcrun' '$(DESTDIR)$(LMODDIR)/hpcrun/$(MODVERSION).lua' \
		'$(DESTDIR)$(MODULEDIR)/hpcrun/$(MODVERSION)' \
		'$(DESTDIR)$(MANDIR)/man1/hpcrun.1' '$(DESTDIR)$(MANDIR)/man1/'hpcrun-*.1 \
		'$(DESTDIR)$(BASHCOMPDIR)/hpcrun' '$(DESTDIR)$(ZSHCOMPDIR)/_hpcrun' '$(DESTDIR)$(FISHCOMPDIR)/hpcrun.fish' \
		'$(DESTDIR)$(DOCDIR)/config.yaml.example'
	@for d in '$(DESTDIR)$(LMODDIR)/hpcrun' '$(DESTDIR)$(MODULEDIR)/hpcrun' '$(DESTDIR)$(DOCDIR)'; do \
		[ ! -d "$$d" ] || rmdir --ignore-fail-on-non-empty "$$d"; \
	done; \
	case '$(PREFIX)' in \
	/usr|/usr/|/usr/local|/usr/local/) top='$(DESTDIR)$(DATADIR)'; set -- '$(DESTDIR)$(LMODDIR)' '$(DESTDIR)$(MODULEDIR)';; \
	*) top='$(DESTDIR)$(PREFIX)'; set -- '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(LMODDIR)' '$(DESTDIR)$(MODULEDIR)' \
		'$(DESTDIR)$(DOCDIR)' '$(DESTDIR)$(MANDIR)/man1' '$(DESTDIR)$(BASHCOMPDIR)' '$(DESTDIR)$(ZSHCOMPDIR)' \
		'$(DESTDIR)$(FISHCOMPDIR)';; \
	esac; \
	for d; do \
		while case "$$d" in "$$top"/?*) true;; *) false;; esac && \
			{ [ ! -e "$$d" ] || rmdir "$$d" 2>/dev/null; }; do d=$${d%/*}; done; \
	done

# A tarball to unpack anywhere: $(DISTDIR)/$(DIST).tar.gz holds $(DIST)/ laid
# out as an install's PREFIX (bin/, share/man, the completions, the
# modulefiles, share/doc/hpcrun/config.yaml.example), with README.md and
# docs/ on top. Its modulefiles find the prefix from their own path, so
# `module use DIR/share/lmod/modulefiles` works wherever it was unpacked.
dist: build docs
	@case '$(VERSION)$(MODVERSION)$(GOARCH)' in *[!A-Za-z0-9._+,=@~-]*) echo "dist: VERSION=$(VERSION) MODVERSION=$(MODVERSION) GOARCH=$(GOARCH): only letters, digits and ._+,=@~- may be in them" >&2; exit 1;; esac
	rm -rf '$(DISTDIR)/$(DIST)' '$(DISTDIR)/$(DIST).tar.gz'
	install -d '$(DISTDIR)/$(DIST)/bin' '$(DISTDIR)/$(DIST)/share/doc/hpcrun' '$(DISTDIR)/$(DIST)/docs' \
		'$(DISTDIR)/$(DIST)/share/lmod/modulefiles/hpcrun' '$(DISTDIR)/$(DIST)/share/modulefiles/hpcrun'
	install -m 0755 '$(BIN)' '$(DISTDIR)/$(DIST)/bin/hpcrun'
	cp -R '$(GEN)/.' '$(DISTDIR)/$(DIST)/share/'
	install -m 0644 examples/config.yaml '$(DISTDIR)/$(DIST)/share/doc/hpcrun/config.yaml.example'
	install -m 0644 README.md '$(DISTDIR)/$(DIST)/README.md'
	install -m 0644 docs/*.md '$(DISTDIR)/$(DIST)/docs/'
	$(call modulefile,modulefiles/hpcrun.lua.in,$(DISTDIR)/$(DIST)/share/lmod/modulefiles/hpcrun/$(MODVERSION).lua,,,)
	$(call modulefile,modulefiles/hpcrun.tcl.in,$(DISTDIR)/$(DIST)/share/modulefiles/hpcrun/$(MODVERSION),,,)
	tar --sort=name --owner=0 --group=0 --numeric-owner --mode=u+rw,go+rX,go-w --use-compress-program='gzip -n -9' \
		$(if $(SOURCE_DATE_EPOCH),--mtime=@$(SOURCE_DATE_EPOCH)) -cf '$(DISTDIR)/$(DIST).tar.gz.new' -C '$(DISTDIR)' '$(DIST)'
	mv '$(DISTDIR)/$(DIST).tar.gz.new' '$(DISTDIR)/$(DIST).tar.gz'
	rm -rf '$(DISTDIR)/$(DIST)'
	@echo "$(DISTDIR)/$(DIST).tar.gz"

clean:
	rm -rf bin dist $(PAYLOAD)
