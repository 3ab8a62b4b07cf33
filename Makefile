# sentinel-proxy build.
#
#   make                      build build/sentinel-proxy (debug info, -O2, warnings are errors)
#   make SANITIZER=address    the same, instrumented (also: undefined); objects kept apart per mode
#   make test                 lint, C unit tests, integration tests against real redis processes
#   make unit | integration   one tier only (PYTEST_ARGS="-k name" narrows the integration run)
#   make fuzz                 libFuzzer harnesses for the scanners and the config loader (clang)
#   make demo                 run the proxy in front of a local Redis/Sentinel setup
#   make bench                redis-benchmark comparison (bench-quick: a few minutes)
#   make bench-failover       kill -9 failover under load: proxy, redis-py Sentinel, haproxy
#   make deps                 install the Debian packages needed to build and test

CC ?= cc
SANITIZER ?=
BUILD := build
MODE := $(if $(SANITIZER),$(SANITIZER),plain)
OBJDIR := $(BUILD)/obj-$(MODE)
PYTHON := /usr/bin/python3

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
        -Wformat=2 -Wno-format-nonliteral -Wvla -Wundef
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 $(WARN) -D_GNU_SOURCE -I. -pthread -fno-strict-aliasing
LDLIBS := -lev -lhiredis -lyaml -lssl -lcrypto -lpthread -lm

ifeq ($(SANITIZER),address)
  CFLAGS += -fsanitize=address -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address
else ifeq ($(SANITIZER),undefined)
  CFLAGS += -fsanitize=undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=undefined
else ifneq ($(SANITIZER),)
  $(error SANITIZER must be address or undefined)
endif

SRCS := $(wildcard proxy/*.c sentinel/*.c conf/*.c)
LIB_SRCS := $(filter-out proxy/main.c,$(SRCS))
OBJS := $(SRCS:%.c=$(OBJDIR)/%.o)
LIB_OBJS := $(LIB_SRCS:%.c=$(OBJDIR)/%.o)
UNIT_SRCS := $(wildcard test/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=$(BUILD)/test-$(MODE)/%)
FUZZ_SRCS := $(wildcard test/fuzz/fuzz_*.c)
BIN := $(BUILD)/sentinel-proxy
FLAGS_STAMP := $(BUILD)/.flags-current

.PHONY: all test unit integration lint format fuzz demo bench bench-quick bench-failover soak deps \
        bench-deps clean FORCE

all: $(BIN)

# The binary is relinked whenever the build mode or flags change, so that
# build/sentinel-proxy is always what the last `make` asked for.
$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(MODE) $(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(MODE) $(CC) $(CFLAGS) $(LDFLAGS)' > $@

$(BIN): $(OBJS) $(FLAGS_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(OBJDIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/test-$(MODE)/%: test/unit/%.c test/unit/unit.h $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itest/unit -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LDLIBS) -lcmocka

-include $(OBJS:.o=.d)

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: $(BIN)
	SP_BINARY=$(abspath $(BIN)) $(PYTHON) -m pytest test/integration -q -rs $(PYTEST_ARGS)

test: lint unit integration

LINT_FILES = $(wildcard proxy/*.[ch] sentinel/*.[ch] conf/*.[ch] test/unit/*.[ch] test/fuzz/*.[ch])
lint:
	clang-format --dry-run -Werror $(LINT_FILES)
	$(PYTHON) -m pyflakes test/integration bench/*.py 2>/dev/null || $(PYTHON) -m pyflakes test/integration

format:
	clang-format -i $(LINT_FILES)

FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -D_GNU_SOURCE -I.
FUZZ_SECONDS ?= 60
fuzz:
	@mkdir -p $(BUILD)/fuzz
	@set -e; for f in $(FUZZ_SRCS); do \
	  n=$$(basename $$f .c); \
	  clang $(FUZZ_FLAGS) -o $(BUILD)/fuzz/$$n $$f $(LIB_SRCS) $(LDLIBS); \
	  mkdir -p $(BUILD)/fuzz/$$n.corpus; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  $(BUILD)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(BUILD)/fuzz/$$n.corpus test/fuzz/corpus/$$n 2>&1 | tail -n 12; \
	done

demo: $(BIN)
	$(PYTHON) test/demo.py

bench: $(BIN)
	$(PYTHON) bench/bench.py $(BENCH_ARGS)

bench-quick: $(BIN)
	$(PYTHON) bench/bench.py --quick $(BENCH_ARGS)

bench-failover: $(BIN)
	$(PYTHON) bench/failover.py

# Peers and the chart for the benchmarks (not needed to build or test).
bench-deps:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends haproxy nutcracker python3-matplotlib; \
	else echo "run as root: apt-get install -y haproxy nutcracker python3-matplotlib"; fi

soak: $(BIN)
	SP_BINARY=$(abspath $(BIN)) SP_SOAK=1 $(PYTHON) -m pytest test/integration -q -m soak $(PYTEST_ARGS)

DEB_BUILD := build-essential pkg-config libev-dev libhiredis-dev libyaml-dev libssl-dev libcmocka-dev clang-format
DEB_TEST := redis-server redis-sentinel redis-tools python3-pytest python3-redis python3-pyflakes procps
deps:
	@missing=$$(for p in $(DEB_BUILD) $(DEB_TEST); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "all build and test packages are installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "missing packages; run as root:"; echo "  apt-get update && apt-get install -y $$missing"; exit 1; fi

clean:
	rm -rf $(BUILD)
