#!/usr/bin/env bash
# Run the stuffgate demo: the bundled demo login API with the gateway in front of it.
# Installs what a fresh Debian machine lacks to build (cmake, a C compiler) when missing, then builds and runs.
# Arguments go to `stuffgate demo` (e.g. --replay 7pay-burst). STUFFGATE_PROFILE=dev skips the optimised build.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=examples/prereqs.sh
source examples/prereqs.sh
# Not --quiet: the first build takes minutes, and cargo's progress shows it is working.
exec cargo run --profile "${STUFFGATE_PROFILE:-release}" -- demo "$@"
