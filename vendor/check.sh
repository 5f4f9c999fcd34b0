#!/usr/bin/env bash
# Prove that vendor/pingora-core is exactly crates.io pingora-core 0.9.1 plus vendor/pingora-core.patch.
#
#   vendor/check.sh           fetch the pristine crate, apply the patch, compare with the vendored tree (CI runs this)
#   vendor/check.sh --update  rewrite vendor/pingora-core.patch from the vendored tree (after changing it)
#
# The crate comes from cargo's local cache when it is there, else from crates.io; either way its SHA-256 must be the
# one the crates.io index publishes for 0.9.1.
set -euo pipefail
cd "$(dirname "$0")"

VERSION=0.9.1
SHA256=a535f47f65fdcb003f9e1df04cd18e614c128dfe9388acce3f211ae38ac14d68
CRATE="pingora-core-$VERSION.crate"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cached=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$CRATE" 2>/dev/null | head -1 || true)
if [ -n "$cached" ]; then
    cp "$cached" "$work/$CRATE"
else
    curl -sSfL --retry 3 -o "$work/$CRATE" "https://static.crates.io/crates/pingora-core/$CRATE"
fi
echo "$SHA256  $work/$CRATE" | sha256sum -c --quiet - || {
    echo "vendor/check.sh: $CRATE does not have the SHA-256 crates.io publishes" >&2
    exit 1
}

mkdir "$work/a"
tar xzf "$work/$CRATE" -C "$work/a" --strip-components=1
# What the vendored copy leaves out: cargo's packaging files, and the examples and benches (their [[example]] and
# [[bench]] entries are removed from Cargo.toml by the patch).
rm -rf "$work/a/.cargo_vcs_info.json" "$work/a/Cargo.lock" "$work/a/Cargo.toml.orig" "$work/a/examples" "$work/a/benches"

if [ "${1:-}" = "--update" ]; then
    # diff exits 1 when the trees differ, which is the point here; the file times are dropped so the patch changes
    # only when the code does.
    (cd "$work" && cp -r "$OLDPWD/pingora-core" b && diff -ruN a b || true) |
        sed -E 's/^(\+\+\+|---) ([^\t]*)\t.*/\1 \2/' >pingora-core.patch
    echo "wrote vendor/pingora-core.patch ($(grep -c '^+++ ' pingora-core.patch) files changed)"
    exit 0
fi

(cd "$work/a" && patch -p1 --quiet --no-backup-if-mismatch) < pingora-core.patch
if ! diff -r "$work/a" pingora-core >"$work/diff"; then
    echo "vendor/check.sh: vendor/pingora-core is not pingora-core $VERSION plus vendor/pingora-core.patch:" >&2
    head -40 "$work/diff" >&2
    echo "(run vendor/check.sh --update after a deliberate change, and describe it in vendor/README.md)" >&2
    exit 1
fi
echo "vendor/pingora-core = crates.io pingora-core $VERSION + vendor/pingora-core.patch ($(grep -c '^+++ ' pingora-core.patch) files)"
