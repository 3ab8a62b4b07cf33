# sentinel-proxy build.
#
#   make                      build build/sentinel-proxy (debug info, -O2, warnings are errors)
#   make SANITIZER=address    the same, instrumented (also: undefined, thread, address,undefined);
#                             objects are kept apart per mode
#   make test                 lint, C unit tests, integration tests against real redis processes
#   make unit | integration   one tier only (PYTEST_ARGS="-k name" narrows the integration run,
#                             INTEGRATION_TESTS=test/integration/test_x.py picks files)
#   make fuzz                 libFuzzer harnesses for the scanners and the config loader (clang)
#   make demo                 run the proxy in front of a local Redis/Sentinel setup
#                             (TLS=1: with TLS on every leg)
#   make bench                redis-benchmark comparison (bench-quick: a few minutes)
#   make bench-callgrind      instructions per request, counted by callgrind
#   make bench-failover       kill -9 failover under load: proxy, redis-py Sentinel, haproxy
#   make faults               the partition and frozen-node tests (test_faults.py; root)
#   make chaos                partitions and frozen nodes under load, the same three side by side
#                             (root: a network namespace and iptables; BENCH_ARGS="--rounds 3")
#   make bench-stall          held requests (CLIENT PAUSE, busy script): what other clients wait
#   make bench-clients        50 ioredis clients, RESP3 and RESP2: speed, replicas, connections
#   make bench-acks           what ack-after-replicas costs: SET latency and throughput, off, 1, 2
#   make bench-tls            TLS termination: direct, sentinel-proxy (plain/TLS to the server), haproxy
#   make soak                 100 failovers under load (kill -9, SENTINEL FAILOVER, SIGSTOP in turn;
#                             SP_SOAK_ROUNDS=N): errors per kind, RSS drift (about 13 minutes)
#   make scale                10,000 clients at once, max-clients refusal, 1,000 slow-loris and
#                             1,000 never-reading clients against one normal client (under a minute)
#   make image-test           build the container image and run it against a local Sentinel
#                             layout (docker, or buildah + debootstrap; root)
#   make install              install the binary, man page, systemd unit and example configuration
#                             (PREFIX=/usr/local, DESTDIR= for staging; make uninstall undoes it)
#   make deps                 install the Debian packages needed to build and test
#   make node-deps            install the Node.js clients (ioredis, node-redis) of
#                             test/clients/package-lock.json; skipped without node/npm
#
# `make test` and `make demo` run `make deps` first (`make test` also `make
# node-deps` when the Node.js clients are not installed). Flags given on the command
# line (CFLAGS=-O0, LDFLAGS=...) are added to the project's own, never in
# their place, and every object is rebuilt when the flags change.

SHELL := /bin/bash
CC ?= cc
SANITIZER ?=
BUILD := build
comma := ,
MODE := $(if $(SANITIZER),$(subst $(comma),-,$(SANITIZER)),plain)
OBJDIR := $(BUILD)/obj-$(MODE)
PYTHON := /usr/bin/python3

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
        -Wformat=2 -Wno-format-nonliteral -Wvla -Wundef
CFLAGS ?= -O2 -g
LDFLAGS ?=
LDLIBS := -lev -lhiredis -lyaml -lssl -lcrypto -lpthread -lm

SAN_FLAGS :=
ifneq ($(SANITIZER),)
  ifneq ($(filter-out address undefined thread,$(subst $(comma), ,$(SANITIZER))),)
    $(error SANITIZER must be address, undefined, thread or address,undefined)
  endif
  SAN_FLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
  ifneq ($(findstring undefined,$(SANITIZER)),)
    SAN_FLAGS += -fno-sanitize-recover=undefined
  endif
endif

SP_CFLAGS := -std=gnu11 $(WARN) -D_GNU_SOURCE -I. -pthread -fno-strict-aliasing $(SAN_FLAGS) $(CFLAGS)
SP_LDFLAGS := -pthread $(SAN_FLAGS) $(LDFLAGS)

SRCS := $(wildcard lib/*.c conf/*.c sentinel/*.c proxy/*.c)
LIB_SRCS := $(filter-out proxy/main.c,$(SRCS))
OBJS := $(SRCS:%.c=$(OBJDIR)/%.o)
LIB_OBJS := $(LIB_SRCS:%.c=$(OBJDIR)/%.o)
UNIT_SRCS := $(wildcard test/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=$(BUILD)/test-$(MODE)/%)
FUZZ_SRCS := $(wildcard test/fuzz/fuzz_*.c)
BIN := $(BUILD)/sentinel-proxy
FLAGS_STAMP := $(OBJDIR)/.flags
BIN_STAMP := $(BUILD)/.flags-bin

.PHONY: install uninstall image-test all test unit integration lint format fuzz demo bench bench-quick bench-callgrind bench-ryw bench-acks bench-anatomy bench-tls \
        bench-failover bench-stall bench-clients chaos faults soak scale deps bench-deps node-deps clean FORCE

all: $(BIN)

# Rewritten only when the compiler, the mode or the flags change: every
# object of the mode depends on its stamp, so they are rebuilt then; the
# binary depends on the last mode's, so build/sentinel-proxy is always what
# the last `make` asked for.
$(FLAGS_STAMP) $(BIN_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(MODE) $(CC) $(SP_CFLAGS) $(SP_LDFLAGS) $(LDLIBS)' | cmp -s - $@ || \
	  echo '$(MODE) $(CC) $(SP_CFLAGS) $(SP_LDFLAGS) $(LDLIBS)' > $@

$(BIN): $(OBJS) $(BIN_STAMP)
	$(CC) $(SP_LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(OBJDIR)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(SP_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/test-$(MODE)/%: test/unit/%.c test/unit/unit.h $(LIB_OBJS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(SP_CFLAGS) -Itest/unit -o $@ $< $(LIB_OBJS) $(SP_LDFLAGS) $(UNIT_LDFLAGS) $(LDLIBS) -lcmocka

# test_reqscan makes allocations fail on purpose.
$(BUILD)/test-$(MODE)/test_reqscan: UNIT_LDFLAGS := -Wl,--wrap=malloc

-include $(OBJS:.o=.d)

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

INTEGRATION_TESTS ?= test/integration
integration: $(BIN)
	SP_BINARY=$(abspath $(BIN)) $(PYTHON) -m pytest $(INTEGRATION_TESTS) -q -rs $(PYTEST_ARGS)

test:
	@$(MAKE) --no-print-directory deps
	@[ -d test/clients/node_modules ] || $(MAKE) --no-print-directory node-deps || \
	  echo "warning: npm could not install the Node.js clients; their tests will be skipped"
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

LINT_FILES = $(wildcard lib/*.[ch] proxy/*.[ch] sentinel/*.[ch] conf/*.[ch] test/unit/*.[ch] \
                        test/fuzz/*.[ch])
lint:
	clang-format --dry-run -Werror $(LINT_FILES)
	$(PYTHON) test/layering.py
	$(PYTHON) -m pyflakes test/integration test/*.py bench/*.py

format:
	clang-format -i $(LINT_FILES)

FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
              -std=gnu11 -D_GNU_SOURCE -I.
FUZZ_SECONDS ?= 60
fuzz:
	@mkdir -p $(BUILD)/fuzz
	@set -e; for f in $(FUZZ_SRCS); do \
	  n=$$(basename $$f .c); \
	  clang $(FUZZ_FLAGS) -o $(BUILD)/fuzz/$$n $$f $(LIB_SRCS) $(LDLIBS); \
	  mkdir -p $(BUILD)/fuzz/$$n.corpus; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  $(BUILD)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(BUILD)/fuzz/$$n.corpus test/fuzz/corpus/$$n 2>&1 | tail -n 12; \
	  test "$${PIPESTATUS[0]}" = 0; \
	done

demo:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory $(BIN)
	$(PYTHON) test/demo.py

bench: $(BIN)
	$(PYTHON) bench/bench.py $(BENCH_ARGS)

bench-quick: $(BIN)
	$(PYTHON) bench/bench.py --quick $(BENCH_ARGS)

bench-callgrind: $(BIN)
	SP_BINARY=$(abspath $(BIN)) $(PYTHON) bench/callgrind.py $(BENCH_ARGS)

bench-failover: $(BIN)
	$(PYTHON) bench/failover.py

chaos: $(BIN)
	SP_BINARY=$(abspath $(BIN)) $(PYTHON) bench/chaos.py $(BENCH_ARGS)

bench-stall: $(BIN)
	SP_BINARY=$(abspath $(BIN)) $(PYTHON) bench/stall.py $(BENCH_ARGS)

bench-anatomy: $(BIN)
	SP_BINARY=$(abspath $(BIN)) $(PYTHON) bench/anatomy.py $(BENCH_ARGS)

bench-ryw: $(BIN)
	SP_BINARY=$(abspath $(BIN)) $(PYTHON) bench/ryw.py $(BENCH_ARGS)

bench-acks: $(BIN)
	SP_BINARY=$(abspath $(BIN)) $(PYTHON) bench/acks.py $(BENCH_ARGS)

bench-tls: $(BIN)
	SP_BINARY=$(abspath $(BIN)) $(PYTHON) bench/tls.py $(BENCH_ARGS)

# Build the container image (docker, or buildah over a debootstrap base) and
# run it against a local Sentinel layout; needs root. Not part of `make test`.
image-test:
	$(PYTHON) test/image_test.py

bench-clients: $(BIN)
	@[ -d test/clients/node_modules ] || $(MAKE) --no-print-directory node-deps
	SP_BINARY=$(abspath $(BIN)) $(PYTHON) bench/clients.py $(BENCH_ARGS)

# Peers and the chart for the benchmarks (not needed to build or test).
bench-deps:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends haproxy nutcracker python3-matplotlib valgrind; \
	else echo "run as root: apt-get install -y haproxy nutcracker python3-matplotlib valgrind"; fi

# Long runs, not part of `make test`; figures in bench/results/ (soak-*,
# scale-*, slow-clients-*).
soak: $(BIN)
	SP_BINARY=$(abspath $(BIN)) SP_SOAK=1 $(PYTHON) -m pytest test/integration -q -rxX -m soak $(PYTEST_ARGS)

scale: $(BIN)
	SP_BINARY=$(abspath $(BIN)) SP_SCALE=1 $(PYTHON) -m pytest test/integration -q -rxX -m scale $(PYTEST_ARGS)

# Partitions and frozen nodes (test/integration/test_faults.py, about 4
# minutes; root, unshare and iptables): run by .ci/run after `make test`.
faults: $(BIN)
	SP_BINARY=$(abspath $(BIN)) SP_FAULTS=1 $(PYTHON) -m pytest test/integration/test_faults.py -q -rxXs $(PYTEST_ARGS)

DEB_BUILD := build-essential pkg-config libev-dev libhiredis-dev libyaml-dev libssl-dev libcmocka-dev clang-format
DEB_TEST := redis-server redis-sentinel redis-tools python3-pytest python3-redis python3-pyflakes procps openssl iproute2 iptables prometheus
DEB_FUZZ := clang libclang-rt-14-dev
# As root, whatever is missing is installed; otherwise the command to run is
# printed, and only what the build and the tests need stops make.
deps:
	@installed() { dpkg-query -W -f='$${Status}\n' $$1 2>/dev/null | grep -q '^install ok installed'; }; \
	missing=$$(for p in $(DEB_BUILD) $(DEB_TEST); do installed $$p || echo $$p; done); \
	fuzz=$$(for p in $(DEB_FUZZ); do installed $$p || echo $$p; done); \
	if [ -z "$$missing$$fuzz" ]; then echo "all build and test packages are installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing:" $$missing $$fuzz; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing $$fuzz; \
	elif [ -n "$$missing" ]; then echo "missing packages; run as root:"; \
	  echo "  apt-get update && apt-get install -y $$missing $$fuzz"; exit 1; \
	else echo "for make fuzz, run as root: apt-get install -y $$fuzz"; fi

# The Node.js clients that test/integration/test_node_clients.py drives (that
# module is skipped while they are not installed).
node-deps:
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
	  npm ci --prefix test/clients --no-audit --no-fund; \
	else echo "node/npm not found: the Node.js client tests will be skipped"; fi

# Installation (of a binary built before: install never builds, so that it
# cannot replace a sanitizer build): the unit gets the binary's installed
# path; an existing configuration file is never overwritten.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR ?= $(PREFIX)/share/man

install:
	@test -x $(BIN) || { echo "$(BIN) is not built: run make first"; exit 1; }
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(SYSCONFDIR)/sentinel-proxy
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/sentinel-proxy
	install -m 644 conf/sentinel-proxy.8 $(DESTDIR)$(MANDIR)/man8/sentinel-proxy.8
	sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|/etc/sentinel-proxy/|$(SYSCONFDIR)/sentinel-proxy/|g' \
	  conf/sentinel-proxy.service > $(DESTDIR)$(UNITDIR)/sentinel-proxy.service
	chmod 644 $(DESTDIR)$(UNITDIR)/sentinel-proxy.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/sentinel-proxy/sentinel-proxy.yaml ]; then \
	  echo "keeping $(DESTDIR)$(SYSCONFDIR)/sentinel-proxy/sentinel-proxy.yaml"; \
	else install -m 644 conf/sentinel-proxy.yaml $(DESTDIR)$(SYSCONFDIR)/sentinel-proxy/sentinel-proxy.yaml; fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/sentinel-proxy $(DESTDIR)$(MANDIR)/man8/sentinel-proxy.8 \
	  $(DESTDIR)$(UNITDIR)/sentinel-proxy.service
	@echo "left in place: $(DESTDIR)$(SYSCONFDIR)/sentinel-proxy (your configuration)"

clean:
	rm -rf $(BUILD)
