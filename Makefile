# Tollgate: the two commands a developer needs (`make up`, `make test`) and their parts.
#
#   make up / make down   the local cluster (deploy/local/)
#   make test             unit tests in a normal and a sanitizer build, then the end-to-end suite
#                         against the sanitizer build (AddressSanitizer + UBSan), so memory errors
#                         under real traffic fail the run
#   make fuzz             libFuzzer runs of every fuzz target (clang), FUZZ_SECONDS each
#   make k8s              the Helm chart against a real kube-apiserver on loopback (tests/k8s/); part of
#                         `make test`. make images: the container images (deploy/docker/), never in tests
#   make bench            the benchmark suite against a release build (bench/README.md); never part of
#                         `make test`. make bench-peers: the same scenarios next to the Portkey gateway;
#                         make bench-soak: SOAK_MINUTES (30) at SOAK_RPS (2000) with streams
BUILD ?= build
SAN_BUILD ?= build-san
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
BENCH_BUILD ?= build-bench

# Sanitizer reports are fatal, leaks included: every process of the end-to-end runs must exit clean
# (tests/lsan.supp lists the few library internals that have no public release call).
export ASAN_OPTIONS ?= abort_on_error=1:detect_leaks=1
export LSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/lsan.supp
export UBSAN_OPTIONS ?= halt_on_error=1:print_stacktrace=1

.PHONY: all deps build build-san up down test unit e2e k8s images fuzz clean bench-build bench bench-peers bench-soak

all: build

deps:
	@bash deploy/local/install-deps.sh

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) >/dev/null
	@ninja -C $(BUILD)

build-san: deps
	@[ -f $(SAN_BUILD)/build.ninja ] || meson setup $(SAN_BUILD) -Dbuildtype=debug \
		-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	@ninja -C $(SAN_BUILD)

# Starts PostgreSQL, the control plane, a dataplane and the mock provider in the background.
up: build
	@bash deploy/local/up.sh $(BUILD)

down:
	@bash deploy/local/down.sh

unit: build build-san
	meson test -C $(BUILD) --print-errorlogs
	meson test -C $(SAN_BUILD) --print-errorlogs

e2e: build-san
	bash tests/e2e/run.sh $(SAN_BUILD)

# Every unit and end-to-end test. CI runs exactly this (.ci/run).
test: unit e2e k8s

# The chart: lint, template, bad values, server-side dry run and install/upgrade/rollback/uninstall
# against kube-apiserver built from Debian's source (cached under ~/.cache/tollgate/k8s; ~6 min once).
k8s:
	@bash deploy/local/install-deps.sh --k8s
	bash tests/k8s/run.sh

# Container images from a local Debian base (deploy/docker/README.md).
images:
	@bash deploy/local/install-deps.sh --images
	bash deploy/docker/build.sh

fuzz: deps
	@bash common/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Benchmarks: a release build of its own, the load tools from Debian (bench/install-deps.sh), results
# in var/bench/<timestamp>-<suite>/ (results.json, results.md, logs).
bench-build: deps
	@bash bench/install-deps.sh
	@[ -f $(BENCH_BUILD)/build.ninja ] || meson setup $(BENCH_BUILD) -Dbuildtype=release >/dev/null
	@ninja -C $(BENCH_BUILD)

bench: bench-build
	TOLLGATE_BUILD=$(BENCH_BUILD) node bench/run.mjs main

bench-peers: bench-build
	@bash bench/install-deps.sh --peers
	TOLLGATE_BUILD=$(BENCH_BUILD) node bench/run.mjs peers

bench-soak: bench-build
	TOLLGATE_BUILD=$(BENCH_BUILD) node bench/run.mjs soak

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD) $(BENCH_BUILD)
