#!/usr/bin/env bash
# Re-fetch the shipped GeoIP country database (and, with --asn, an ASN one)
# from the npm registry with `npm pack`, check it, and install it atomically
# next to this script: country.mmdb, LICENSE, VERSION (and asn.mmdb,
# ASN-LICENSE). A running gateway picks the new file up on its next
# reload_if_changed() (size/mtime check); files are replaced by rename, so a
# reader never sees a half-written file.
#
# Usage: geoip/refresh.sh [--asn] [--help]
#
# Environment (all optional):
#   PKG        country package   (default @ip-location-db/geo-whois-asn-country-mmdb)
#   PKG_FILE   file inside it    (default geo-whois-asn-country.mmdb, IPv4+IPv6)
#   ASN_PKG    ASN package       (default @ip-location-db/iplocate-asn-mmdb)
#   ASN_FILE   file inside it    (default iplocate-asn.mmdb, IPv4+IPv6)
#   STUFFGATE  stuffgate binary used to verify the file opens
#              (default: stuffgate on PATH, then target/release, target/debug)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PKG="${PKG:-@ip-location-db/geo-whois-asn-country-mmdb}"
PKG_FILE="${PKG_FILE:-geo-whois-asn-country.mmdb}"
ASN_PKG="${ASN_PKG:-@ip-location-db/iplocate-asn-mmdb}"
ASN_FILE="${ASN_FILE:-iplocate-asn.mmdb}"
WANT_ASN=0

for arg in "$@"; do
  case "$arg" in
    --asn) WANT_ASN=1 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "refresh.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

command -v npm >/dev/null 2>&1 || { echo "refresh.sh: npm is required (apt-get install npm)" >&2; exit 1; }
command -v tar >/dev/null 2>&1 || { echo "refresh.sh: tar is required" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Finds a stuffgate binary that has the `geoip lookup` subcommand.
find_stuffgate() {
  local c
  for c in "${STUFFGATE:-}" "$(command -v stuffgate 2>/dev/null || true)" \
           "$REPO/target/release/stuffgate" "$REPO/target/debug/stuffgate"; do
    if [[ -n "$c" && -x "$c" ]] && timeout 20 "$c" geoip lookup --help >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  return 1
}

# fetch PACKAGE FILE DEST_DIR: npm pack + extract; prints the package version.
fetch() {
  local pkg="$1" file="$2" dir="$3" tgz
  mkdir -p "$dir"
  ( cd "$dir" && npm pack --silent "$pkg" >/dev/null ) \
    || { echo "refresh.sh: 'npm pack $pkg' failed (is the npm registry reachable? does the package exist?)" >&2; return 1; }
  tgz="$(ls "$dir"/*.tgz)"
  tar -xzf "$tgz" -C "$dir"
  if [[ ! -s "$dir/package/$file" ]]; then
    echo "refresh.sh: $pkg has no non-empty '$file'; it contains:" >&2
    ls -l "$dir/package" >&2
    return 1
  fi
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$dir/package/package.json" 2>/dev/null \
    || sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$dir/package/package.json" | head -n1
}

# check FILE KIND [COUNTRY_FILE]: refuses files that are not MaxMind DBs;
# with a stuffgate binary, also looks addresses up through the real reader
# (an ASN file is checked together with COUNTRY_FILE).
check() {
  local f="$1" kind="$2" country="${3:-}" bin out
  [[ -s "$f" ]] || { echo "refresh.sh: $f is empty" >&2; return 1; }
  if ! tail -c 262144 "$f" | LC_ALL=C grep -aq 'MaxMind\.com'; then
    echo "refresh.sh: $f has no MaxMind DB metadata marker; not an .mmdb file" >&2
    return 1
  fi
  if bin="$(find_stuffgate)"; then
    if [[ "$kind" == country ]]; then
      out="$(timeout 60 "$bin" geoip lookup 8.8.8.8 1.1.1.1 --db "$f" 2>"$TMP/describe-$kind")" || { echo "refresh.sh: stuffgate refused $f" >&2; return 1; }
      grep -q $'^8\.8\.8\.8\tUS' <<<"$out" || { echo "refresh.sh: 8.8.8.8 did not resolve to US in $f:" >&2; echo "$out" >&2; return 1; }
    else
      out="$(timeout 60 "$bin" geoip lookup 8.8.8.8 --db "$country" --asn-db "$f" 2>"$TMP/describe-$kind")" || { echo "refresh.sh: stuffgate refused $f" >&2; return 1; }
      grep -q 'AS15169' <<<"$out" || { echo "refresh.sh: 8.8.8.8 did not resolve to AS15169 in $f:" >&2; echo "$out" >&2; return 1; }
    fi
    echo "verified with $bin geoip lookup: $(head -n1 <<<"$out")"
  else
    echo "note: no stuffgate binary with 'geoip lookup' found; checked only that $f is a non-empty .mmdb (build it and re-run, or set STUFFGATE=)"
  fi
}

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# ---- country database ----
echo "fetching $PKG ..."
VERSION="$(fetch "$PKG" "$PKG_FILE" "$TMP/country")"
NEW="$TMP/country/package/$PKG_FILE"
check "$NEW" country
LICENSE_FIELD="$(sed -n 's/.*"license": *"\([^"]*\)".*/\1/p' "$TMP/country/package/package.json" | head -n1)"

{
  echo "geoip/country.mmdb: licence and attribution"
  echo
  echo "Source: npm package $PKG version $VERSION (file $PKG_FILE),"
  echo "published by sapics, project https://github.com/sapics/ip-location-db"
  echo "package.json \"license\": \"$LICENSE_FIELD\""
  echo "(CC0-1.0 is the Creative Commons Zero public-domain dedication,"
  echo " https://creativecommons.org/publicdomain/zero/1.0/)."
  echo
  echo "The data itself is built from the five RIRs' WHOIS and IP-ASN-country"
  echo "statistics (afrinic, apnic, arin, lacnic, ripe ncc) and GeoFeed data."
  echo "The package ships this notice for the RIR data (file NRO_LICENSE, verbatim):"
  echo
  echo "----------------------------------------------------------------------"
  for f in "$TMP"/country/package/*LICENSE*; do
    [[ -f "$f" ]] && { cat "$f"; echo; }
  done
  echo "----------------------------------------------------------------------"
  echo
  echo "So: redistribution is allowed; give attribution (CC BY 4.0) wherever the"
  echo "data is shown or redistributed, e.g.:"
  echo "  \"IP-to-country data: ip-location-db (geo-whois-asn-country), derived from"
  echo "   RIR data provided by the Number Resource Organization (nro.net), CC BY 4.0.\""
} > "$TMP/LICENSE"

{
  echo "package: $PKG"
  echo "version: $VERSION"
  echo "file: $PKG_FILE -> country.mmdb"
  echo "size_bytes: $(stat -c %s "$NEW")"
  echo "sha256: $(sha256 "$NEW")"
  echo "fetched: $(date -u +%Y-%m-%d) with npm pack"
  if [[ -s "$TMP/describe-country" ]]; then
    echo "opened_as: $(sed -n 's/^# //p' "$TMP/describe-country" | head -n1 | sed "s#$NEW#country.mmdb#")"
  fi
} > "$TMP/VERSION"

# ---- optional ASN database ----
if [[ "$WANT_ASN" == 1 ]]; then
  echo "fetching $ASN_PKG ..."
  ASN_VERSION="$(fetch "$ASN_PKG" "$ASN_FILE" "$TMP/asn")"
  ASN_NEW="$TMP/asn/package/$ASN_FILE"
  check "$ASN_NEW" asn "$NEW"
  ASN_LICENSE_FIELD="$(sed -n 's/.*"license": *"\([^"]*\)".*/\1/p' "$TMP/asn/package/package.json" | head -n1)"
  {
    echo "geoip/asn.mmdb: licence and attribution"
    echo
    echo "Source: npm package $ASN_PKG version $ASN_VERSION (file $ASN_FILE),"
    echo "project https://github.com/sapics/ip-location-db"
    echo "package.json \"license\": \"$ASN_LICENSE_FIELD\""
    echo "Licence files shipped in the package, verbatim:"
    for f in "$TMP"/asn/package/*LICENSE*; do
      [[ -f "$f" ]] && { echo "---- $(basename "$f") ----"; cat "$f"; echo; }
    done
  } > "$TMP/ASN-LICENSE"
  {
    echo "asn_package: $ASN_PKG"
    echo "asn_version: $ASN_VERSION"
    echo "asn_file: $ASN_FILE -> asn.mmdb"
    echo "asn_size_bytes: $(stat -c %s "$ASN_NEW")"
    echo "asn_sha256: $(sha256 "$ASN_NEW")"
  } >> "$TMP/VERSION"
fi

# ---- install: copy next to the target, then rename (atomic per file) ----
install_file() { cp "$1" "$HERE/.$2.new"; mv -f "$HERE/.$2.new" "$HERE/$2"; }
install_file "$NEW" country.mmdb
install_file "$TMP/LICENSE" LICENSE
if [[ "$WANT_ASN" == 1 ]]; then
  install_file "$ASN_NEW" asn.mmdb
  install_file "$TMP/ASN-LICENSE" ASN-LICENSE
elif [[ -f "$HERE/asn.mmdb" ]]; then
  grep '^asn_' "$HERE/VERSION" >> "$TMP/VERSION" || true
fi
install_file "$TMP/VERSION" VERSION
echo "installed $PKG $VERSION into $HERE/country.mmdb$([[ "$WANT_ASN" == 1 ]] && echo " and $ASN_PKG $ASN_VERSION into $HERE/asn.mmdb")"
cat "$HERE/VERSION"
