#!/usr/bin/env bash
# The GPU run in one command, from the repository root (docs/benchmarks.md, "GPU run"):
#
#   bash bench/gpu_run.sh             # on the GPU machine (under 8 minutes on one H100)
#   bash bench/gpu_run.sh --dry-run   # the same steps on the CPU, small slide (CI)
#
# 1. installs the carried wheels (.whl/*.whl, from `make gpu-wheels`) into /tmp/site;
# 2. puts src/, the repository and /tmp/site on PYTHONPATH;
# 3. checks every import and the sample slides (fails within 20 s, naming what is missing);
# 4. runs bench.gpu.run: slides, throughput (DICOM, SVS, tuning), equivalence, latency,
#    each under a hard time budget, with the log and one JSON in $OUT (default bench-out/).
#
# Other arguments go to bench.gpu.run (--cache DIR, --only STEPS, --total-s S).
# PYTHON picks the interpreter (default python3); IHGAMP_GPU_SITE the wheel folder.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
dry=0
for arg in "$@"; do [ "$arg" = --dry-run ] && dry=1; done
py=${PYTHON:-python3}
out=${OUT:-bench-out}
mkdir -p "$out"
export OUT="$out"
IHGAMP_GPU_RUN_T0=$(date +%s)
export IHGAMP_GPU_RUN_T0

main() {
echo "gpu-run: $(date -u +%FT%TZ) $(uname -n) dry_run=$dry python=$($py -c 'import sys; print(sys.version.split()[0])')"

site=${IHGAMP_GPU_SITE:-/tmp/site}
shopt -s nullglob
wheels=(.whl/*.whl)
shopt -u nullglob
extra=""
pyver=$("$py" -c 'import sys; print(f"{sys.implementation.name}{sys.version_info[0]}.{sys.version_info[1]}")')
if [ ${#wheels[@]} -gt 0 ] && [ "$pyver" != cpython3.12 ]; then
  # The wheels are built for the GPU machine's CPython 3.12: never mix them into another.
  echo "gpu-run: .whl/ holds CPython 3.12 wheels; $py is $pyver: using its own packages"
elif [ ${#wheels[@]} -gt 0 ]; then
  if ! timeout 90 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$site" "${wheels[@]}"; then
    echo "gpu-run: FAILED to install the ${#wheels[@]} carried wheels into $site"
    exit 2
  fi
  extra=":$site"
  echo "gpu-run: installed ${#wheels[@]} carried wheels into $site"
elif [ $dry = 0 ]; then
  echo "gpu-run: no .whl/*.whl here (run 'make gpu-wheels' and carry .whl); checking imports"
fi
trace=""
[ -n "${IHGAMP_TRACE_IMPORTS:-}" ] && trace="$PWD/bench/gpu/trace:"
export PYTHONPATH="$trace$PWD/src:$PWD$extra${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

check=(-m bench.gpu.check)
limit=20  # on the GPU machine; a busy 2-core CI machine needs longer to import torch & co.
[ $dry = 1 ] && check+=(--dry-run) && limit=90
timeout "${IHGAMP_CHECK_TIMEOUT_S:-$limit}" "$py" "${check[@]}"
rc=$?
if [ $rc -ne 0 ]; then
  [ $rc -eq 124 ] && echo "gpu-run: FAILED: the import check did not finish in time"
  exit 3
fi
"$py" -m bench.gpu.run "$@"
}

# Everything printed also goes to the log; tee has finished when the script returns.
main "$@" 2>&1 | tee -a "$out/gpu-run.log"
exit "${PIPESTATUS[0]}"
