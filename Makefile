# TCE front door: build, demo, tests, bench.
#
#   make run     the demo (embedded default: no Consul, no Redis)
#   make test    unit tests, lint, integration tests (a set under valgrind)
#   make valgrind  the integration tests with nginx inside memcheck
#   make bench   instructions and throughput against stock nginx
#   make fuzz    libFuzzer targets of the parsers, FUZZ_SECONDS each
#   make chaos   2 minutes of load while everything around nginx moves
#   make soak DURATION=3600   the same for that long, samples + plot
#   make limits  the largest registry per zone size, the longest names

NGINX_SRC   ?= /usr/share/nginx/src
NGINX_BIN   ?= /usr/sbin/nginx
PYTHON      ?= /usr/bin/python3
BUILD       := build
TOP         := $(CURDIR)

DEB_PACKAGES := nginx-core nginx-dev libcurl4-openssl-dev libjansson-dev \
                libhiredis-dev libpcre3-dev zlib1g-dev libssl-dev \
                libcmocka-dev python3-pytest python3-pytest-xdist \
                python3-jsonschema python3-hypothesis curl wrk redis-server \
                redis-sentinel prometheus valgrind openssl gcc make \
                chromium chromium-driver python3-selenium \
                python3-matplotlib

MOD_DIRS    := ngx_tce_module lb admin
MOD_SRCS    := $(wildcard $(addsuffix /*.c,$(MOD_DIRS)))
MOD_HDRS    := $(wildcard $(addsuffix /*.h,$(MOD_DIRS)))

# files that include no nginx header: linked directly by unit tests
PURE_SRCS   := $(shell grep -L 'ngx_config.h' $(MOD_SRCS) /dev/null \
                 | grep -v /dev/null)
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))
UNIT_CFLAGS := -g -O1 -Wall -Wextra -Werror -fsanitize=address,undefined \
               -fno-sanitize-recover=all \
               -fno-omit-frame-pointer -Ingx_tce_module -Ilb -Iadmin \
               -Itests/unit
UNIT_LIBS   := -lcmocka -ljansson -lcurl -lhiredis -lz -lm

# fuzz targets (tests/fuzz/fuzz_<name>.c) as name:max_len; make fuzz
# runs each with clang's libFuzzer, make unit replays the committed
# corpora tests/fuzz/corpus/<name> through a gcc build (replay.c)
FUZZ_PACKAGES := clang libclang-rt-dev
FUZZ_SECONDS  ?= 30
FUZZ_CC       ?= clang
FUZZ_TARGETS  := state:4096 consul_health:16384 consul_services:2048 \
                 canary_policy:256 addr:128
FUZZ_NAMES    := $(foreach t,$(FUZZ_TARGETS),$(firstword $(subst :, ,$(t))))
FUZZ_SRCS     := $(wildcard tests/fuzz/*.c)
FUZZ_BINS     := $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_NAMES))
FUZZ_REPLAYS  := $(patsubst %,$(BUILD)/fuzz/replay_%,$(FUZZ_NAMES))
FUZZ_CFLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined \
                 -fno-sanitize-recover=all -fno-omit-frame-pointer \
                 -Ingx_tce_module
FUZZ_LIBS     := -ljansson -lcurl -lhiredis -lz -lm

MODULE      := $(BUILD)/ngx_tce_module.so

.PHONY: module-locked all deps run run-consul test unit integration lint \
        valgrind bench clean fuzz fuzz-deps chaos soak limits nothreads

all: $(MODULE)

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y -qq $$missing; \
	fi

# nginx's configure records the list of sources: run it again when a
# source file is added or removed, or when config changes.
$(BUILD)/srcs.list: FORCE
	@mkdir -p $(BUILD)
	@echo $(MOD_SRCS) $(MOD_HDRS) > $@.new
	@cmp -s $@.new $@ || mv $@.new $@; rm -f $@.new

$(BUILD)/nginx/Makefile: config $(BUILD)/srcs.list
	rm -rf $(BUILD)/nginx
	cp -r $(NGINX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && bash -c '. ./conf_flags && ./configure \
	    "$${NGX_CONF_FLAGS[@]}" --with-cc-opt="-g -O2 -fPIC" \
	    --add-dynamic-module=$(TOP)' > $(TOP)/$(BUILD)/configure.log \
	    || { tail -n 5 $(TOP)/$(BUILD)/configure.log; exit 1; }

# several makes may run at once (tests, bench): one builds at a time
$(MODULE): config $(BUILD)/srcs.list $(MOD_SRCS) $(MOD_HDRS)
	@mkdir -p $(BUILD)
	@flock $(BUILD)/.lock $(MAKE) -s module-locked

module-locked: $(BUILD)/nginx/Makefile
	$(MAKE) -s -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/ngx_tce_module.so $(MODULE).tmp
	mv $(MODULE).tmp $(MODULE)

# the pure sources compiled once (sanitizers on) into one archive that
# every unit test and corpus replay links: not once per test binary
PURE_OBJS   := $(patsubst %.c,$(BUILD)/unit/obj/%.o,$(PURE_SRCS))
PURE_LIB    := $(BUILD)/unit/libpure.a

$(BUILD)/unit/obj/%.o: %.c $(MOD_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(UNIT_CFLAGS) -c -o $@ $<

$(PURE_LIB): $(PURE_OBJS)
	rm -f $@
	ar rcs $@ $(PURE_OBJS)

$(BUILD)/unit/%: tests/unit/%.c $(PURE_LIB) $(MOD_HDRS) \
                 $(wildcard tests/unit/*.h)
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(PURE_LIB) $(UNIT_LIBS)

$(BUILD)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c \
                        $(PURE_LIB) $(MOD_HDRS)
	@mkdir -p $(BUILD)/fuzz
	$(CC) $(UNIT_CFLAGS) -fno-sanitize-recover=all -o $@ $< \
	    tests/fuzz/replay.c $(PURE_LIB) $(UNIT_LIBS)

unit: $(UNIT_BINS) $(FUZZ_REPLAYS)
	@for t in $(UNIT_BINS); do \
	    echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 $$t || exit 1; \
	done
	@for t in $(FUZZ_NAMES); do \
	    ASAN_OPTIONS=detect_leaks=1 $(BUILD)/fuzz/replay_$$t \
	        tests/fuzz/corpus/$$t || exit 1; \
	done

# the sources that include nginx compile without thread pools too
NGX_SRCS    := $(filter-out $(PURE_SRCS),$(MOD_SRCS))
nothreads: $(BUILD)/nginx/Makefile
	@$(MAKE) -s -C $(BUILD)/nginx -f objs/Makefile \
	    -f $(TOP)/tests/nothreads.mk nothreads \
	    NOTHREADS_SRCS="$(addprefix $(TOP)/,$(NGX_SRCS))"

lint:
	@sh tests/lint.sh $(MOD_SRCS) $(MOD_HDRS) $(UNIT_SRCS) $(FUZZ_SRCS)

integration: $(MODULE)
	cd tests/doubles && $(PYTHON) -m pytest -q -p no:cacheprovider
	cd tests/integration && $(PYTHON) -m pytest -q -p no:cacheprovider \
	    $(PYTEST_ARGS)

# the integration suite with the nginx under test (and its nginx -t)
# inside valgrind memcheck: deadlines x8, a test fails on any memcheck
# error or a definite leak through the module (tests/valgrind.supp:
# nginx's own).  A subset: make valgrind PYTEST_ARGS='-k consul'.
# VALGRIND_JOBS pytest-xdist processes share the tests (much of a test
# under memcheck is waiting: timeouts, blocking queries, reloads); 0
# runs them in one process.  Tests marked novalgrind (docs/style.md)
# run in the plain pass only.
VALGRIND_JOBS ?= 2
valgrind: $(MODULE)
	cd tests/integration && TCE_VALGRIND=1 $(PYTHON) -m pytest -q \
	    -p no:cacheprovider -n $(VALGRIND_JOBS) $(PYTEST_ARGS)

# make test runs the memcheck pass on MEMCHECK_TESTS only, to keep
# make test within about 15 minutes on 2 cores; make valgrind runs every
# test.  The files were chosen on 2026-12-02 by line coverage
# (tests/coverage/: the module built with gcc --coverage, each test
# file run alone in the plain pass, then files taken greedily by new
# module lines per cost, its plain seconds + 4 per test for the nginx
# starts under memcheck): these 12 files run 86.6% of the 15,088 module
# lines the whole suite runs, at 14% of the whole suite's cost;
# test_tls_upstream.py added by hand (the TLS session paths).  Most of
# the lines left out: Sentinel and Consul client paths, canary choice,
# the diff module, configuration parsing; make valgrind covers them.
# (The set of 2026-12-01, 20 files and 93.6%, made make test take
# about 19 minutes in CI.)
MEMCHECK_TESTS ?= test_operator_readme.py test_admin_openapi.py \
    test_redis_fleet_inst.py test_zone_limit.py test_admin_scale_in.py \
    test_dashboard.py test_redis_fleet_set.py test_deploy_webhook.py \
    test_admin_consul_instances.py test_operator_catalog_log.py \
    test_deploy_fleet.py test_zone_reclaim.py test_tls_upstream.py

test: deps lint
	$(MAKE) nothreads
	$(MAKE) -j2 unit
	$(MAKE) -j2 all
	$(MAKE) integration
	$(MAKE) valgrind PYTEST_ARGS="$(MEMCHECK_TESTS)"

run: deps $(MODULE)
	@sh conf/run-demo.sh $(NGINX_BIN) $(TOP)

run-consul: deps $(MODULE)
	@sh conf/run-consul.sh $(NGINX_BIN) $(TOP) $(PYTHON)

bench: deps $(MODULE)
	$(PYTHON) bench/bench.py --nginx $(NGINX_BIN) --module $(TOP)/$(MODULE)
	$(PYTHON) bench/consul_bench.py --nginx $(NGINX_BIN) --module $(TOP)/$(MODULE)
	$(PYTHON) bench/metrics_bench.py --nginx $(NGINX_BIN) --module $(TOP)/$(MODULE)
	$(PYTHON) bench/rebuild_bench.py --nginx $(NGINX_BIN) --module $(TOP)/$(MODULE)
	$(PYTHON) bench/admin_bench.py --nginx $(NGINX_BIN) --module $(TOP)/$(MODULE)
	$(PYTHON) bench/diff_bench.py --nginx $(NGINX_BIN) --module $(TOP)/$(MODULE)
	$(PYTHON) bench/deploy_bench.py --nginx $(NGINX_BIN) --module $(TOP)/$(MODULE)
	$(PYTHON) bench/slowstart_bench.py --nginx $(NGINX_BIN) --module $(TOP)/$(MODULE)
	$(PYTHON) bench/fleet_bench.py --nginx $(NGINX_BIN) --module $(TOP)/$(MODULE)

# tests/chaos/: CHAOS_SECONDS of load through two front door nodes and
# a stock nginx while Consul, Redis, the admin API, reloads and kills
# move everything (README "Reliability"); make integration runs 20 s
# of it (test_chaos.py).  make soak: DURATION seconds, a sample every
# 10 s into $(BUILD)/soak/soak.csv and its plot soak.png.
CHAOS_SECONDS ?= 120
chaos: deps $(MODULE)
	$(PYTHON) tests/chaos/chaos.py --duration $(CHAOS_SECONDS)

DURATION ?= 600
soak: deps $(MODULE)
	@mkdir -p $(BUILD)/soak
	$(PYTHON) tests/chaos/chaos.py --duration $(DURATION) --soak \
	    --sample 10 --csv $(BUILD)/soak/soak.csv
	$(PYTHON) tests/chaos/soak_plot.py $(BUILD)/soak/soak.csv

# tests/chaos/limits.py: per tce_zone size (LIMIT_SIZES) and shape
# (services), the largest registry the zone holds and what a change
# past it gets; the longest names accepted (README "Reliability").
LIMIT_SIZES ?= 1m,8m,32m
limits: deps $(MODULE)
	$(PYTHON) tests/chaos/limits.py --sizes $(LIMIT_SIZES)

fuzz-deps:
	@missing=""; for p in $(FUZZ_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y -qq $$missing; \
	fi

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(PURE_SRCS) $(MOD_HDRS) | fuzz-deps
	@mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(PURE_SRCS) $(FUZZ_LIBS)

# each target for FUZZ_SECONDS from the committed corpus; new inputs go
# to $(BUILD)/fuzz/corpus/<name>; a crash, leak, UB report or input
# slower than 10 s fails, its input kept as $(BUILD)/fuzz/<name>-*
fuzz: deps fuzz-deps $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	    n=$${t%%:*}; len=$${t##*:}; log=$(BUILD)/fuzz/$$n.log; \
	    mkdir -p $(BUILD)/fuzz/corpus/$$n; \
	    echo "== fuzz_$$n: $(FUZZ_SECONDS)s, max_len $$len"; \
	    $(BUILD)/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) \
	        -max_len=$$len -timeout=10 -print_final_stats=1 \
	        -artifact_prefix=$(BUILD)/fuzz/$$n- \
	        $(BUILD)/fuzz/corpus/$$n tests/fuzz/corpus/$$n > $$log 2>&1 \
	        || { tail -n 60 $$log; echo "fuzz_$$n failed: $$log"; \
	             exit 1; }; \
	    grep -E 'stat::(number_of_executed_units|peak_rss_mb)' $$log \
	        | tr '\n' ' '; echo; \
	done

clean:
	rm -rf $(BUILD)

FORCE:
