#!/usr/bin/env bash
# bmbench device check: everything docs/performance.md needs from one GPU (H100/H200), in under 8 minutes.
#
#   scripts/device-check.sh              on a machine with one CUDA GPU (installs nothing from the network)
#   scripts/device-check.sh --cpu-smoke  every stage at toy size on the CPU (tests this script: ~2-4 minutes)
#   scripts/device-check.sh --dry-run    check the Python environment and print the plan; run nothing
#
# Stages, in order of importance, each started only if the time budget (DEVICE_CHECK_BUDGET, default 450 s)
# still allows its estimate, each under its own timeout; a skipped or failed stage is reported, never hidden:
#   env      nvidia-smi, Python and package versions, the imports the bench/run path needs
#   synth    a SYNTHETIC data set with the real per-class counts x DEVICE_CHECK_SCALE (default 0.25; the
#            generation rate is printed with the time the full 171,374 images would take); the bench tiles
#            the cached images to a real fold's 109,700 training images per epoch (GPU-resident, real size)
#   cache    `bmbench data cache --all-images` (decode once; rate printed)
#   b32      `bmbench bench` resnet152, regnet_y_32gf (channels_last), vgg19_bn, vit_l_32 at batch 32, in that
#            order, one process (images loaded once; the JSON is rewritten after each backbone, so a stage cut
#            by its time limit keeps what it measured); it leaves RUN_RESERVE seconds for the next stage
#   run      `bmbench run` of one fold end to end (resnet_random with a fixed LR, compile + channels_last,
#            1 epoch on the demo SYNTHETIC split, GPU data path): fold.json and history printed
#   max-vv   `bmbench bench --batch max` vgg19_bn + vit_l_32 (the 40 % MFU target)
#   conc     `bmbench bench --concurrent 2` resnet152 batch 32: do two folds at once raise total throughput?
#   nchw     regnet_y_32gf at batch 32 in NCHW (RegNet's grouped convolutions: both layouts are compared)
#   max-rr   `bmbench bench --batch max` resnet152 + regnet_y_32gf (if time is left)
# DEVICE_CHECK_COMPILE=0 measures the bmbench path without torch.compile (compilation takes about a minute per
# backbone and layout; with it off every stage fits easily, but the figures are eager bf16).
#   summary  Markdown tables for docs/performance.md and the issue's targets, met or not
# Results: $OUT (the device tool's output folder) or $DEVICE_CHECK_WORK/results: bench-*.json, logs, summary.md.
#
# Needs: torch, torchvision, numpy, pandas, typer, rich, Pillow and pydantic. pydantic is imported by the
# recipe and submission schemas, so the bench and run paths need it. If it is missing, the script installs it
# from wheels brought along in $BMBENCH_WHEELS (default .device-wheels/, filled by scripts/device-wheels.sh on
# a machine with PyPI access) into a temporary folder, and otherwise stops at once saying so.
set -uo pipefail

MODE=gpu
case "${1:-}" in
  --cpu-smoke) MODE=cpu ;;
  --dry-run) MODE=dry ;;
  "") ;;
  *) echo "usage: $0 [--cpu-smoke|--dry-run]" >&2; exit 2 ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
RESULTS="${OUT:-${DEVICE_CHECK_WORK:-${TMPDIR:-/tmp}/bmbench-device-check}/results}"
WORK="${DEVICE_CHECK_WORK:-${TMPDIR:-/tmp}/bmbench-device-check}"
BUDGET="${DEVICE_CHECK_BUDGET:-$([[ $MODE == cpu ]] && echo 900 || echo 450)}"
mkdir -p "$RESULTS" "$WORK"
export PYTHONPATH="$REPO/benchmark${PYTHONPATH:+:$PYTHONPATH}"
export BMBENCH_CACHE="$WORK/cache"
export PYTHONUNBUFFERED=1
START=$(date +%s)
SUMMARY="$RESULTS/stages.txt"
: > "$SUMMARY"

if [[ $MODE == cpu ]]; then
  SCALE="${DEVICE_CHECK_SCALE:-0.002}"; DEVICE=cpu; IMAGES=600; STEPS=2; WARMUP=1; EVAL=1
  BIG=(--backbone demo_cnn); PAIR_A=(--backbone demo_cnn); PAIR_B=(--backbone demo_cnn); BATCH_MAX=8
  FOUR=(--backbone demo_cnn); NCHW=(--backbone demo_cnn); RUN_SUB=demo_cnn; RUN_ARGS=(--epochs 1 --max-steps 2)
else
  SCALE="${DEVICE_CHECK_SCALE:-0.25}"; DEVICE=cuda; IMAGES=109700; STEPS=15; WARMUP=3; EVAL=3
  BIG=(--backbone torchvision:resnet152)
  PAIR_A=(--backbone torchvision:resnet152 --backbone torchvision:regnet_y_32gf)
  PAIR_B=(--backbone torchvision:vgg19_bn --backbone torchvision:vit_l_32); BATCH_MAX=max
  FOUR=("${PAIR_A[@]}" "${PAIR_B[@]}"); NCHW=(--backbone torchvision:regnet_y_32gf)
  RUN_SUB=resnet_random; RUN_ARGS=(--epochs 1)
fi

bm() { "$PYTHON" -m bmbench.cli.main "$@"; }
elapsed() { echo $(( $(date +%s) - START )); }
note() { printf '[%4ss] %s\n' "$(elapsed)" "$*"; }

# stage NAME ESTIMATE_S COMMAND...: run if the budget allows, with a timeout (the budget left, less RESERVE
# seconds kept for later stages); log to $RESULTS/NAME.log
RESERVE=0
stage() {
  local name=$1 estimate=$2; shift 2
  local left=$(( BUDGET - $(elapsed) - RESERVE ))
  RESERVE=0
  [[ $MODE == cpu ]] && estimate=0  # toy sizes: every stage runs
  if (( estimate > left )); then
    note "SKIPPED $name: needs about ${estimate}s, ${left}s of the budget left"
    echo "$name SKIPPED (time budget)" >> "$SUMMARY"; return 0
  fi
  (( left < 30 )) && left=30
  note "START $name (estimate ${estimate}s, limit ${left}s)"
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$left" "$@" > "$RESULTS/$name.log" 2>&1
  local rc=$?
  local took=$(( $(date +%s) - t0 ))
  if (( rc == 0 )); then
    note "DONE  $name in ${took}s"; echo "$name ok ${took}s" >> "$SUMMARY"
  else
    note "FAIL  $name (exit $rc after ${took}s); last lines of $RESULTS/$name.log:"
    tail -n 15 "$RESULTS/$name.log" | sed 's/^/        /'
    echo "$name FAILED exit $rc ${took}s" >> "$SUMMARY"
  fi
  grep -v -E '^\s*$' "$RESULTS/$name.log" | grep -E -v '━|Compiling|\[dim\]' | tail -n 40
  return 0
}

# --- env ----------------------------------------------------------------------------------------------------
note "bmbench device check ($MODE) in $REPO; results in $RESULTS; budget ${BUDGET}s"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc; free -g | head -2; df -h "$WORK" | tail -1
"$PYTHON" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "torchvision", "numpy", "pandas", "typer", "rich", "PIL", "pydantic", "timm", "scipy",
             "sklearn", "cv2", "torch_lr_finder"):
    try:
        module = importlib.import_module(name)
        print(f"  {name:16s} {getattr(module, '__version__', 'ok')}")
    except Exception as exc:  # noqa: BLE001
        print(f"  {name:16s} MISSING ({type(exc).__name__})")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

if ! "$PYTHON" -c "import pydantic" 2> /dev/null; then
  WHEELS="${BMBENCH_WHEELS:-$REPO/.device-wheels}"
  if compgen -G "$WHEELS/pydantic-*.whl" > /dev/null; then
    note "pydantic is missing: installing it from the wheels in $WHEELS (no network) into $WORK/site"
    "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELS" --target "$WORK/site" pydantic \
      || { echo "could not install pydantic from $WHEELS (wrong Python version? see scripts/device-wheels.sh)"; exit 3; }
    export PYTHONPATH="$PYTHONPATH:$WORK/site"
  else
    cat <<EOF
MISSING: pydantic. bmbench's recipe and submission schemas (bmbench/recipe.py,
bmbench/submissions/schema.py) are pydantic models, so neither \`bmbench bench\` nor \`bmbench run\` can start.
This machine has no network: bring the wheels along. On a machine with PyPI access, in this checkout:
    scripts/device-wheels.sh            # writes .device-wheels/ (pydantic for CPython 3.10-3.13, ~10 MB)
then run this script again (the folder travels with the working tree), or point BMBENCH_WHEELS at it.
EOF
    exit 3
  fi
fi
"$PYTHON" -c "import bmbench.datapaths.gpu, bmbench.bench.measure, bmbench.runs.grid" \
  || { echo "bmbench does not import (see above)"; exit 3; }

if [[ $MODE == gpu ]] && ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device here: use --cpu-smoke to test this script on a CPU"; exit 2
fi
if [[ $MODE == dry ]]; then
  note "dry run: environment ok; the GPU run would execute: synth (scale 0.25), cache, b32, run, max-vv, conc,"
  note "nchw, max-rr, summary within ${BUDGET}s"
  exit 0
fi

# --- data ---------------------------------------------------------------------------------------------------
DATA_OUT="$WORK/data-$SCALE"
DATA="$DATA_OUT/BM_cytomorphology_data"
if [[ ! -d $DATA ]]; then
  rm -rf "$DATA_OUT"
  stage synth 120 "$PYTHON" -m bmbench.cli.main data synth --counts bm --scale "$SCALE" --out "$DATA_OUT"
  "$PYTHON" - "$RESULTS/synth.log" "$SCALE" "$IMAGES" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"wrote ([\d,]+) SYNTHETIC images .* in ([\d.]+) s", text.replace("\n", " "))
if m:
    n, s = int(m.group(1).replace(",", "")), float(m.group(2))
    print(f"synthetic generation: {n:,} images in {s:.1f} s = {n / s:,.0f} images/s; the real size (171,374) "
          f"would take {171374 / (n / s):,.0f} s here, so the set is {float(sys.argv[2]):g} x real size and the "
          f"bench tiles it to {int(sys.argv[3]):,} images per epoch")
EOF
else
  note "reusing $DATA"
fi
stage cache 120 "$PYTHON" -m bmbench.cli.main data cache --data "$DATA" --all-images

# --- bench --------------------------------------------------------------------------------------------------
COMMON=(--data "$DATA" --images "$IMAGES" --device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" --eval-steps "$EVAL")
if [[ "${DEVICE_CHECK_COMPILE:-1}" == 0 ]]; then COMMON+=(--no-compile); fi
RESERVE=${RUN_RESERVE:-100}
stage b32 250 "$PYTHON" -m bmbench.cli.main bench "${FOUR[@]}" --layouts channels_last --batch 32 "${COMMON[@]}" \
  --json "$RESULTS/bench-b32.json"

# --- one fold end to end ------------------------------------------------------------------------------------
SUBS="$WORK/submissions"
rm -rf "$SUBS" "$WORK/runs"; mkdir -p "$SUBS"
cp -r "submissions/$RUN_SUB" "$SUBS/"
if [[ $MODE == gpu ]]; then  # a fixed LR: the range test needs torch-lr-finder and matplotlib
  printf '\n[recipe]\nlr = 0.01\ncompile = true\nchannels_last = true\n' >> "$SUBS/$RUN_SUB/submission.toml"
else
  sed -i 's/^num_workers = 2/num_workers = 0\ndata_path = "gpu"/' "$SUBS/$RUN_SUB/submission.toml"
fi
stage run 100 "$PYTHON" -m bmbench.cli.main run "$SUBS/$RUN_SUB" --data synthetic --folds 0 --device "$DEVICE" \
  --out "$WORK/runs" "${RUN_ARGS[@]}"
"$PYTHON" - "$WORK/runs/$RUN_SUB/synthetic/fold0" <<'EOF'
import json, sys
from pathlib import Path
fold = Path(sys.argv[1])
if (fold / "fold.json").is_file():
    record = json.loads((fold / "fold.json").read_text())
    print("fold.json:", json.dumps({k: record.get(k) for k in ("data_path", "bf16", "channels_last", "compile",
                                                                 "seconds", "best_val_accuracy")}))
    for line in (fold / "history.jsonl").read_text().splitlines():
        h = json.loads(line)
        print(f"  epoch {h['epoch']}: {h['images_per_s']:,.0f} training images/s, {h['seconds']:.1f} s "
              f"(first epoch includes compilation), val acc {h['val_accuracy']:.3f}")
EOF

# --- largest batches, concurrency, RegNet's other layout, as time allows ------------------------------------
stage max-vv 110 "$PYTHON" -m bmbench.cli.main bench "${PAIR_B[@]}" --layouts channels_last --batch "$BATCH_MAX" \
  "${COMMON[@]}" --json "$RESULTS/bench-max-vv.json"
stage conc 130 "$PYTHON" -m bmbench.cli.main bench "${BIG[@]}" --paths bmbench --layouts channels_last --batch 32 \
  --concurrent 2 --only-train "${COMMON[@]}" --json "$RESULTS/bench-conc.json"
stage nchw 100 "$PYTHON" -m bmbench.cli.main bench "${NCHW[@]}" --paths bmbench --layouts nchw --batch 32 \
  --only-train "${COMMON[@]}" --json "$RESULTS/bench-nchw.json"
stage max-rr 200 "$PYTHON" -m bmbench.cli.main bench "${PAIR_A[@]}" --batch "$BATCH_MAX" "${COMMON[@]}" \
  --json "$RESULTS/bench-max-rr.json"

# --- summary ------------------------------------------------------------------------------------------------
shopt -s nullglob
JSONS=("$RESULTS"/bench-*.json)
if (( ${#JSONS[@]} )); then
  "$PYTHON" -m bmbench.bench.report "${JSONS[@]}" | tee "$RESULTS/summary.md"
fi
note "stages:"; sed 's/^/        /' "$SUMMARY"
note "finished in $(elapsed)s (budget ${BUDGET}s); results in $RESULTS"
if [[ $MODE == cpu ]]; then
  grep -q FAILED "$SUMMARY" && exit 1
fi
exit 0
