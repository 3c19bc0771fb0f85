#!/usr/bin/env bash
# bmbench device check: every figure docs/performance.md needs from one GPU (H100/H200), in under 8 minutes,
# with a report whatever fails. A thin wrapper over `python -m bmbench.bench device-check`
# (benchmark/bmbench/bench/device_check.py documents the stages, limits and failure injection).
#
#   scripts/device-check.sh              on a machine with one CUDA GPU: installs nothing, needs no pydantic
#   scripts/device-check.sh --cpu-smoke  every stage at toy size on the CPU (tests the machinery; 78-100 s on an idle 2-core machine)
#
# Needs only what the GPU machine has (torch, torchvision, timm, numpy, Pillow; the last stage, `bmbench run`,
# also pydantic, typer and rich, and reports "needs pydantic" where it is missing). Nothing to carry.
# Results: $OUT (the device tool's output folder) or $DEVICE_CHECK_WORK/results: report.md, report.json (every
# stage's document) and logs.txt (every stage's output tail); the per-stage <stage>.json and <stage>.log are in
# $DEVICE_CHECK_WORK/stages. Exit 0 when every stage reported ok (or not available / needs pydantic).
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO/benchmark${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
"$PYTHON" -m bmbench.bench device-check "$@"
rc=$?
RESULTS="${OUT:-${DEVICE_CHECK_WORK:-${TMPDIR:-/tmp}/bmbench-device-check}/results}"
[[ -f "$RESULTS/report.md" ]] && cat "$RESULTS/report.md"
exit $rc
