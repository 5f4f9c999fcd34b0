#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: make sure a fresh Debian/Ubuntu machine can build stuffgate.
# pingora's compression dependency (libz-ng-sys) builds zlib-ng with cmake and a C compiler; stuffgate needs Rust ≥ 1.85.
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "stuffgate: installing ${missing[*]} (needed to build pingora's zlib-ng)…" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "stuffgate: please install ${missing[*]} (cmake, a C compiler and pkg-config) with your package manager" >&2
    exit 1
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "stuffgate: Rust is missing: install it with https://rustup.rs (stuffgate needs Rust ≥ 1.85), then run this again" >&2
  exit 1
fi
rust_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "${rust_minor:-0}" -lt 85 ] 2>/dev/null; then
  echo "stuffgate: $(rustc --version) is too old: stuffgate needs Rust ≥ 1.85 (\`rustup update stable\`)" >&2
  exit 1
fi
