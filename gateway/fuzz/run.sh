#!/usr/bin/env bash
# Runs every cargo-fuzz target of the gateway for SECONDS each (default 60) and exits
# non-zero when any of them crashes (panic, overflow, debug assertion, OOM, timeout).
#
#   gateway/fuzz/run.sh [SECONDS]
#
# Needs cargo-fuzz: `cargo install cargo-fuzz --locked` (~2 min) and a C++ compiler
# (libfuzzer-sys builds libFuzzer).
#
# Toolchain: this runs on a stable-only machine. cargo-fuzz's default build passes
# `-Zsanitizer=address`, which stable rustc rejects ("the option `Z` is only accepted
# on the nightly compiler"); with `--sanitizer none` every flag it passes is stable
# (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*, --cfg fuzzing,
# -Cdebug-assertions), so libFuzzer still gets coverage feedback and panics, overflow
# checks and debug assertions still abort the run. AddressSanitizer would only add checks
# on `unsafe` code (the workspace forbids it; dependencies have some) and would need
# nightly or RUSTC_BOOTSTRAP=1, which makes stable accept unstable flags unsupported:
# not used. To run with ASan on a nightly toolchain: FUZZ_SANITIZER=address.
#
# The fuzz crate is its own workspace with its own target dir (gateway/fuzz/target),
# built like `cargo fuzz` always builds: release profile with debug assertions and
# overflow checks. The first build takes ~10-20 min on 2 CPUs (pingora); the fuzzing
# time is counted after it. The corpus grows in corpus/<target>/ (only seed-* files are
# tracked: config's are TOML files; router's were picked from a fuzzing run, bytes that
# `Input`'s Arbitrary layout decodes, still valid seeds when it changes) and crash
# reproducers land in artifacts/<target>/: reproduce one with
#   cargo fuzz run --sanitizer none <target> artifacts/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
case $seconds in
'' | *[!0-9]*)
  echo "usage: $0 [SECONDS]" >&2
  exit 2
  ;;
esac
sanitizer=${FUZZ_SANITIZER:-none}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 2
fi
echo "== $(rustc --version), $(cargo fuzz --version), sanitizer: $sanitizer"

# A libFuzzer dictionary for the config target from the config schema, so the fuzzer
# does not have to guess key names (kept in step with gateway/src/config/file.rs).
mkdir -p target
dict=target/config.dict
{
  for word in '[' ']' '[[' ']]' '{' '}' '=' ',' '"' "'" '"""' '#' '.' ':' '*.' '/' \
    '[admin]' '[server]' '[reload]' '[dns]' '[[listener]]' '[[route]]' '[upstream.' \
    true false 0.0.0.0:8443 127.0.0.1:80 '[::]:443' hello:80 10s 1m 500ms 1MiB \
    round_robin random least_requests consistent_hash header: cookie: client_ip path; do
    printf '"%s"\n' "$(printf '%s' "$word" | sed 's/\\/\\\\/g; s/"/\\"/g')"
  done
  printf '%s\n' '"\x0A"'
  sed -n 's/.*pub(crate) \([a-z_0-9]*\):.*/"\1"/p; s/.*rename = "\([a-z_0-9]*\)".*/"\1"/p' \
    ../src/config/file.rs
} | sort -u >"$dict"

mapfile -t targets < <(cargo fuzz list)
if [ ${#targets[@]} -eq 0 ]; then
  echo "cargo fuzz list found no targets" >&2
  exit 2
fi
echo "== build: ${targets[*]}"
build_start=$SECONDS
cargo fuzz build --sanitizer "$sanitizer"
echo "== built in $((SECONDS - build_start)) s"

failed=()
for target in "${targets[@]}"; do
  echo "== fuzz $target for $seconds s (corpus/$target, artifacts/$target)"
  mkdir -p "corpus/$target"
  args=(-max_total_time="$seconds" -timeout=30 -print_final_stats=1)
  if [ "$target" = config ]; then
    args+=(-dict="$dict")
  fi
  start=$SECONDS
  # libFuzzer prints a line per new input: kept in a log, its final stats printed.
  log="target/$target.log"
  if cargo fuzz run --sanitizer "$sanitizer" "$target" -- "${args[@]}" >"$log" 2>&1; then
    echo "== $target: no crash in $((SECONDS - start)) s, corpus: $(find "corpus/$target" -type f | wc -l) inputs" \
      "($(grep -m1 -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?') runs; log: gateway/fuzz/$log)"
  else
    tail -n 60 "$log" >&2
    echo "== $target: FAILED after $((SECONDS - start)) s; reproducers:" >&2
    ls -1d "artifacts/$target"/* >&2 || true
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
echo "== fuzzing passed: ${targets[*]} ($seconds s each)"
