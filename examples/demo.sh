#!/usr/bin/env bash
# Run the stuffgate demo: the bundled demo login API with the gateway in front of it.
# Installs the one system package pingora's build needs (cmake) when it is missing, then builds and runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
  echo "stuffgate demo: installing cmake (needed to build pingora's zlib-ng)…" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake build-essential >/dev/null
fi
exec cargo run --release -- demo "$@"
