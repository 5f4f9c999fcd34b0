#!/usr/bin/env bash
# Re-creates policies/data/common-passwords.bloom, the breached-password
# filter stuffgate ships by default, from Django's common-password list
# (django/contrib/auth/common-passwords.txt.gz, BSD-3-Clause; see
# LICENSE-django-common-passwords.txt next to this script).
#
#   policies/data/build-common-passwords.sh        # from the repository root or anywhere
#
# Needs pip (to fetch the Django wheel from PyPI; Django itself is not
# installed or committed), python3 and cargo.
#
# What it builds: a password-kind filter (`--format plain`: each line is
# one password, hashed with SHA-1) at false-positive rate 0.001. Django's
# list holds 19,640 lower-cased passwords (Django's validator compares
# `password.lower().strip()`); they are inserted exactly as given, so look
# passwords up with `BreachFilter::contains_password_any_case`, which also
# tries the lower-cased form.
#
# The build is reproducible: a fixed SipHash seed and SOURCE_DATE_EPOCH
# (the list's timestamp inside the wheel) give a byte-identical file, so a
# reviewer can re-run this and compare with `git diff --stat`.
#
# Environment:
#   DJANGO_VERSION  Django release to take the list from (default below;
#                   the list's sha256 is only checked for the default).
#   STUFFGATE       command that runs stuffgate (default: cargo run --release --quiet --)
set -euo pipefail

DJANGO_VERSION="${DJANGO_VERSION:-5.2.19}"
# sha256 of django/contrib/auth/common-passwords.txt.gz in Django 5.2.19
EXPECTED_SHA256="3c1baed62596de36860824eb3f436d5932d37ca8b06e59df78f5a44ec175afe4"
# Fixed SipHash keys (sha256 of "stuffgate policies/data/common-passwords.bloom v1").
# Not a secret: every filter file stores its keys.
SEED="050dacecd17be70604f5fd4a735ab96b487e901b0b16382d589b7465d7a3f18b"
FP_RATE="0.001"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
read -r -a stuffgate <<< "${STUFFGATE:-cargo run --release --quiet --}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetching Django $DJANGO_VERSION from PyPI (wheel only, not installed)..." >&2
pip download --quiet --no-deps --only-binary=:all: "django==$DJANGO_VERSION" -d "$tmp"
wheel="$(ls "$tmp"/django-"$DJANGO_VERSION"-*.whl)"

# Extract the list and the licence; print the list's timestamp in the wheel.
epoch="$(python3 - "$wheel" "$tmp" <<'EOF'
import calendar, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(wheel)
names = z.namelist()
lst = "django/contrib/auth/common-passwords.txt.gz"
lic = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE"))
with open(f"{out}/common-passwords.txt.gz", "wb") as f:
    f.write(z.read(lst))
with open(f"{out}/LICENSE", "wb") as f:
    f.write(z.read(lic))
print(calendar.timegm(z.getinfo(lst).date_time + (0, 0, 0)))
EOF
)"

sha="$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$tmp/common-passwords.txt.gz")"
if [[ "$DJANGO_VERSION" == "5.2.19" && "$sha" != "$EXPECTED_SHA256" ]]; then
    echo "error: common-passwords.txt.gz from Django $DJANGO_VERSION has sha256 $sha, expected $EXPECTED_SHA256" >&2
    exit 1
fi

SOURCE_DATE_EPOCH="$epoch" "${stuffgate[@]}" breach build \
    --format plain \
    --input "$tmp/common-passwords.txt.gz" \
    --out "$here/common-passwords.bloom" \
    --fp-rate "$FP_RATE" \
    --seed "$SEED" \
    --strict

{
    echo "policies/data/common-passwords.bloom is built (by build-common-passwords.sh) from"
    echo "django/contrib/auth/common-passwords.txt.gz of Django $DJANGO_VERSION"
    echo "($(basename "$wheel") from PyPI; sha256 of the .gz: $sha),"
    echo "which is distributed under Django's licence, reproduced here:"
    echo
    cat "$tmp/LICENSE"
} > "$here/LICENSE-django-common-passwords.txt"

echo "wrote $here/common-passwords.bloom and $here/LICENSE-django-common-passwords.txt" >&2
