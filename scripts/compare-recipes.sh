#!/usr/bin/env bash
# Train, export and evaluate the default recipe with and without mask-only composed trays
# over several training seeds (same held-out split and feature cache: only `train_seed`
# changes), then print the table of held-out figures per run and the means.
#   [RECIPES="plain mask240"] bash scripts/compare-recipes.sh [SEED...]
#   (default seeds: 1 2; ~25 min per recipe and seed on 2 cores, once the feature cache exists)
# Results: var/recipes/<recipe>-s<seed>/{model.onnx,eval/metrics.json}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SEEDS=("${@:-1 2}")
MASK_TRAYS='{"images": 240, "per_label": 20, "supervise": "mask"}'
for seed in ${SEEDS[@]}; do
  for recipe in ${RECIPES:-plain mask240}; do
    out=var/recipes/$recipe-s$seed
    [ -f "$out/eval/metrics.json" ] && continue
    compose='{}'; [ "$recipe" = mask240 ] && compose=$MASK_TRAYS
    $PY -m model.train --config model/configs/default.yaml --train-seed "$seed" \
        --compose "$compose" --output-dir "$out"
    $PY -m model.export --checkpoint "$out/checkpoint.pt" --out "$out/model.onnx"
    $PY -m model.evaluate --model "$out/model.onnx" --out "$out/eval"
  done
done
$PY -m model.recipes var/recipes
