#!/usr/bin/env bash
# Builds every fuzz target with clang's libFuzzer and runs each for a bounded time on its corpus
# (new inputs it finds are added to a scratch copy, not to the repository's corpus).
# usage: run.sh BUILD_DIR SECONDS
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-60}
cd "$(dirname "$0")/../.."
[ -f "$build/build.ninja" ] || CC=clang meson setup "$build" -Dbuildtype=debug -Dfuzzing=true >/dev/null
ninja -C "$build" >/dev/null
for target in "$build"/common/libfuzzer_* "$build"/dataplane/libfuzzer_*; do
	[ -f "$target" ] && [ -x "$target" ] || continue
	name=${target##*/libfuzzer_}
	corpus=$(find common dataplane -type d -name "corpus_$name" | head -1)
	[ -n "$corpus" ] || { echo "no corpus for $name" >&2; exit 1; }
	scratch=$(mktemp -d)
	cp "$corpus"/. "$scratch"/ -r
	echo "fuzzing $name for ${seconds}s"
	"$target" -max_total_time="$seconds" -max_len=65536 "$scratch" 2>&1 | tail -3
	rm -rf "$scratch"
done
