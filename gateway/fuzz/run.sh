#!/usr/bin/env bash
# Runs every cargo-fuzz target of the gateway (`cargo fuzz list`) for SECONDS each
# (default 60), as many at once as there are CPUs (FUZZ_JOBS), and exits non-zero when
# any of them crashes (panic, overflow, debug assertion, OOM, timeout).
#
#   gateway/fuzz/run.sh [SECONDS]
#
# Needs cargo-fuzz (`e2e/setup.sh ci` installs a prebuilt one in target/venv, as .ci/run
# does; or `cargo install cargo-fuzz --locked`, ~2 min) and a C++ compiler (libfuzzer-sys
# builds libFuzzer).
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
# overflow checks, every crate with coverage instrumentation, --cfg fuzzing and one
# codegen unit (cargo-fuzz's RUSTFLAGS), for an explicit --target. The workspace's
# target dir would share none of it: no other build makes target/<triple>/release or
# release-profile build scripts on the host. The first build takes ~19 min on a loaded
# 2-CPU machine (load average ~12; 349 units, the gateway crate alone 340 s on one
# thread); the fuzzing time is counted after it. The corpus grows in corpus/<target>/ (only seed-* files are
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

# One target: fuzzes it for $seconds, prints its verdict, writes it to target/<target>.verdict.
fuzz_one() { # TARGET
  local target=$1 start=$SECONDS log="target/$1.log"
  mkdir -p "corpus/$target"
  local args=(-max_total_time="$seconds" -timeout=30 -print_final_stats=1)
  if [ "$target" = config ]; then
    args+=(-dict="$dict")
  fi
  # libFuzzer prints a line per new input: kept in a log, its final stats printed.
  if cargo fuzz run --sanitizer "$sanitizer" "$target" -- "${args[@]}" >"$log" 2>&1; then
    echo "== $target: no crash in $((SECONDS - start)) s, corpus: $(find "corpus/$target" -type f | wc -l) inputs" \
      "($(grep -m1 -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?') runs; log: gateway/fuzz/$log)"
    echo ok >"target/$target.verdict"
  else
    {
      tail -n 60 "$log"
      echo "== $target: FAILED after $((SECONDS - start)) s; reproducers:"
      ls -1d "artifacts/$target"/* || true
    } >&2
    echo failed >"target/$target.verdict"
  fi
}

# Each target runs on one core (libFuzzer's default: one process, one thread), so up to
# $FUZZ_JOBS (default: the number of CPUs) run at once, each for its full $seconds.
jobs=${FUZZ_JOBS:-$(nproc)}
echo "== fuzz ${targets[*]} for $seconds s each, $jobs at a time (corpus/<target>, artifacts/<target>)"
for target in "${targets[@]}"; do
  rm -f "target/$target.verdict"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  fuzz_one "$target" &
done
wait
failed=()
for target in "${targets[@]}"; do
  [ "$(cat "target/$target.verdict" 2>/dev/null)" = ok ] || failed+=("$target")
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
echo "== fuzzing passed: ${targets[*]} ($seconds s each)"
