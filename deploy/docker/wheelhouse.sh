#!/usr/bin/env bash
# Fill deploy/docker/wheelhouse/ with every wheel the image installs (the runtime
# dependencies of pyproject.toml at the versions of constraints.txt, plus the project's
# build back-end), for Linux x86_64, CPython 3.11 and glibc <= 2.36 (Debian bookworm).
# The Dockerfile then installs from this folder with --no-index: the build needs no
# package index and skips downloading the several-GB CUDA torch wheels again.
#
#   deploy/docker/wheelhouse.sh        # uses .venv/bin/python's pip (PYTHON=... to change)
#
# Without a wheelhouse the Dockerfile downloads the same pins from the package index.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
python=${PYTHON:-.venv/bin/python}
out=deploy/docker/wheelhouse

reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
"$python" - >"$reqs" <<'PY'
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))
for requirement in project["project"]["dependencies"] + project["build-system"]["requires"]:
    print(requirement)
PY

stamp="$out/.inputs"
want=$(cat "$reqs" constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && compgen -G "$out/*.whl" >/dev/null; then
  echo "wheelhouse: up to date ($(du -sh "$out" | cut -f1))"
  exit 0
fi
echo "wheelhouse: collecting the pinned wheels into $out (several GB the first time)"
# `pip wheel` saves published wheels as they are and builds the few sdist-only packages
# (pure Python) into wheels, so the image build needs no compiler and no index.
log=$(mktemp)
trap 'rm -f "$reqs" "$log"' EXIT
if ! "$python" -m pip wheel -q --disable-pip-version-check --prefer-binary -w "$out" \
  -c constraints.txt -r "$reqs" >"$log" 2>&1; then
  grep -v "is ignored" "$log" >&2
  echo "wheelhouse: pip wheel failed" >&2
  exit 1
fi
# The markers pip evaluated are the host interpreter's; the image runs bookworm's Python
# 3.11.2, which needs a few more (redis wants async-timeout below 3.11.3). Add what the
# image's interpreter needs until the folder is closed under its requirements.
for _ in 1 2 3 4 5; do
  missing=$("$python" - "$out" <<'PY'
"""Print the requirements the image's interpreter needs that no wheel in the folder meets."""

import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

# Debian bookworm's python3 (3.11.2) on x86_64 Linux.
ENV = {
    "python_version": "3.11", "python_full_version": "3.11.2", "implementation_name": "cpython",
    "implementation_version": "3.11.2", "platform_python_implementation": "CPython",
    "platform_system": "Linux", "platform_machine": "x86_64", "sys_platform": "linux",
    "os_name": "posix", "platform_release": "", "platform_version": "", "extra": "",
}
have = {}
for wheel in Path(sys.argv[1]).glob("*.whl"):
    name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        have[name] = Parser().parsestr(zf.read(meta).decode("utf-8", "replace"))
for name, meta in have.items():
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(ENV):
            continue
        if canonicalize_name(req.name) not in have:
            print(f"{req.name}{req.specifier}")
PY
)
  [ -z "$missing" ] && break
  echo "wheelhouse: adding what bookworm's Python 3.11.2 needs besides:" $missing
  # shellcheck disable=SC2086 # one argument per requirement
  if ! "$python" -m pip wheel -q --disable-pip-version-check --prefer-binary -w "$out" \
    -c constraints.txt $missing >"$log" 2>&1; then
    grep -v "is ignored" "$log" >&2
    echo "wheelhouse: pip wheel failed" >&2
    exit 1
  fi
done
"$python" - "$out" <<'PY'
"""Keep the wheels the pins select; refuse any the image (bookworm, x86_64, CPython 3.11) can't use."""

import sys
from pathlib import Path

from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

folder = Path(sys.argv[1])
wheels = sorted(folder.glob("*.whl"))
if not wheels:
    sys.exit("wheelhouse: pip collected nothing")
pins = {}
for line in Path("constraints.txt").read_text().splitlines():
    name, _, version = line.partition("==")
    if version:
        pins[name.strip().lower().replace("_", "-").replace(".", "-")] = version.strip()

# What pip inside the image accepts: CPython 3.11, glibc 2.36, x86_64.
platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
target = set(cpython_tags((3, 11), ["cp311"], platforms))
target |= set(compatible_tags((3, 11), "cp311", platforms))

bad, stale = [], []
for wheel in wheels:
    name, version, _, tags = parse_wheel_filename(wheel.name)
    pinned = pins.get(str(name))
    if pinned is not None and str(version) != pinned and version.public != pinned:
        stale.append(wheel)
    elif not tags & target:
        bad.append(wheel.name)
for wheel in stale:
    wheel.unlink()
if bad:
    sys.exit("wheelhouse: not installable in the image (Debian bookworm, x86_64, CPython 3.11): " + ", ".join(bad))
kept = sorted(folder.glob("*.whl"))
print(f"wheelhouse: {len(kept)} wheels, {sum(w.stat().st_size for w in kept) / 1e9:.1f} GB"
      + (f" ({len(stale)} stale removed)" if stale else ""))
PY
echo "$want" >"$stamp"
