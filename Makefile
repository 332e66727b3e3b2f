# Tollgate: the two commands a developer needs (`make up`, `make test`) and their parts.
#
#   make up / make down   the local cluster (deploy/local/)
#   make test             unit tests in a normal and a sanitizer build, then the end-to-end suite
#                         against the sanitizer build (AddressSanitizer + UBSan), so memory errors
#                         under real traffic fail the run
#   make fuzz             libFuzzer runs of every fuzz target (clang), FUZZ_SECONDS each
BUILD ?= build
SAN_BUILD ?= build-san
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60

# Sanitizer reports are fatal, leaks included: every process of the end-to-end runs must exit clean
# (tests/lsan.supp lists the few library internals that have no public release call).
export ASAN_OPTIONS ?= abort_on_error=1:detect_leaks=1
export LSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/lsan.supp
export UBSAN_OPTIONS ?= halt_on_error=1:print_stacktrace=1

.PHONY: all deps build build-san up down test unit e2e fuzz clean

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
test: unit e2e

fuzz: deps
	@bash common/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)
