#!/usr/bin/env bash
# Re-creates policies/data/disposable-email-domains.txt from the PyPI package `disposable-email-domains`
# (the disposable-email-domains project's blocklist, MIT). The list is compiled into the binary
# (`email_domain` with `deny_disposable = true`): rebuild stuffgate after refreshing it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
pip download --quiet --no-deps -d "$work" disposable-email-domains
python3 - "$work"/*.whl "$here/disposable-email-domains.txt" <<'PY'
import sys, zipfile, ast
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    source = z.read("disposable_email_domains/__init__.py").decode()
    version = wheel.rsplit("/", 1)[-1].split("-")[1]
    licence = next(n for n in z.namelist() if n.endswith("LICENSE.txt"))
    open(out.replace("disposable-email-domains.txt", "LICENSE-disposable-email-domains.txt"), "wb").write(z.read(licence))
tree = ast.parse(source)
domains = next(ast.literal_eval(node.value) for node in tree.body
               if isinstance(node, ast.Assign) and node.targets[0].id == "blocklist")
with open(out, "w") as f:
    f.write("# Disposable e-mail domains: the disposable-email-domains project's blocklist (MIT licence, see\n")
    f.write(f"# LICENSE-disposable-email-domains.txt), from the PyPI package disposable-email-domains {version}.\n")
    f.write("# Regenerate with policies/data/refresh-disposable-domains.sh. One domain a line.\n")
    for d in sorted(domains):
        f.write(d + "\n")
print(f"{len(domains)} domains -> {out}")
PY
