# Tollgate: the two commands a developer needs (`make up`, `make test`) and their parts.
BUILD ?= build

.PHONY: all deps build up down test unit e2e clean

all: build

deps:
	@bash deploy/local/install-deps.sh

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) >/dev/null
	@ninja -C $(BUILD)

# Starts PostgreSQL, the control plane, a dataplane and the mock provider in the background.
up: build
	@bash deploy/local/up.sh $(BUILD)

down:
	@bash deploy/local/down.sh

unit: build
	meson test -C $(BUILD) --print-errorlogs

e2e: build
	bash tests/e2e/run.sh $(BUILD)

# Every unit and end-to-end test. CI runs exactly this (.ci/run).
test: unit e2e

clean:
	rm -rf $(BUILD) var
