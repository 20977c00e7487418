#!/usr/bin/env bash
# The README's test command: installs what the tests need and is missing
# (e2e/setup.sh test: Debian packages, Python packages in target/venv), then runs every
# test. Arguments go to cargo test:
#
#   e2e/test.sh                                  all tests (the container test is ignored)
#   e2e/test.sh -p e2e --test proxy              one e2e file
#   e2e/test.sh -- --include-ignored             with the container test, as .ci/run does
set -euo pipefail
cd "$(dirname "$0")/.."
e2e/setup.sh test
exec cargo test --workspace --all-features "$@"
