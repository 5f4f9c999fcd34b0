#!/usr/bin/env bash
# The README's test command: installs what a fresh Debian machine lacks to build (cmake, a C compiler), then runs
# every test (`cargo test`; extra arguments go to it, e.g. `./examples/test.sh --test operator`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=examples/prereqs.sh
source examples/prereqs.sh
exec cargo test --locked "$@"
