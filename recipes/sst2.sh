#!/usr/bin/env bash
# GLUE SST-2 (binary sentiment) with a sequence-classification head.
#
# Data: GLUE's SST-2.zip as distributed (https://gluebenchmark.com/tasks, or
# https://dl.fbaipublicfiles.com/glue/data/SST-2.zip): train.tsv and dev.tsv with the
# columns `sentence<TAB>label`, labels 0 (negative) / 1 (positive). Read as is: the
# `sentence` column is found by name, the labels become ids 0/1 named "0"/"1".
#
# Usage: recipes/sst2.sh [SST-2 folder]     PRETRAINED=path/to/gpt2 recipes/sst2.sh ...
#
# Reported for a pretrained GPT-2 124M fine-tuned on SST-2: dev accuracy 0.9254
#   (huggingface.co/PavanNeerudu/gpt2-finetuned-sst2, 2 epochs at 2e-5, batch 32);
#   GPT-1 (117M, the same shape) reached 91.3 on the test set (Radford et al. 2018,
#   "Improving Language Understanding by Generative Pre-Training", table 4).
# A tiny model from scratch (this script's default): not measured in this repository's
#   sessions: the GLUE files are not on the build machines. Record yours here.
SOURCE_HINT="download GLUE SST-2 (https://dl.fbaipublicfiles.com/glue/data/SST-2.zip) and pass its folder"
source "$(dirname "$0")/_common.sh"
DATA=${1:-data/SST-2}
need "$DATA/train.tsv" "$DATA/dev.tsv"

"$GPT2KIT" train --task sequence-classification "${MODEL[@]}" \
  --train-file "$DATA/train.tsv" --eval-file "$DATA/dev.tsv" --output-dir "$OUT/model" \
  --epochs "${EPOCHS:-2}" --lr "${LR:-2e-5}" --batch-size 32 --max-length 128 \
  --warmup-ratio 0.06 --eval-steps 500 --metric-for-best-model accuracy --greater-is-better \
  --load-best-model-at-end --seed "${SEED:-0}" ${MAX_MINUTES:+--max-minutes "$MAX_MINUTES"}
"$GPT2KIT" evaluate --task sequence-classification --model "$OUT/model" \
  --eval-file "$DATA/dev.tsv" --json "$OUT/dev_metrics.json" --predictions "$OUT/dev.labels"
# dev.labels: one predicted label per line, in dev.tsv's order
