#!/usr/bin/env bash
# SQuAD v1.1 extractive QA with a span head, scored by the official evaluate-v1.1.py.
#
# Data: train-v1.1.json and dev-v1.1.json as distributed
# (https://rajpurkar.github.io/SQuAD-explorer/): {"data": [{"title", "paragraphs": [{"context",
# "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}. Contexts longer
# than the window are read in windows of 384 tokens overlapping by 128 (question first).
#
# Usage: recipes/squad_v1.sh [folder with train-v1.1.json dev-v1.1.json]
#
# Reported for a pretrained GPT-2 124M with a span head: 68.40 EM / 78.87 F1 on dev-v1.1
#   (huggingface.co/anas-awadalla/gpt2-span-head-finetuned-squad, eval_results.json, 2 epochs).
# A tiny model from scratch: not measured here (the data is not on the build machines).
# gpt2kit prints EM/F1 as fractions (0.684); the official script prints percentages (68.4).
SOURCE_HINT="download train-v1.1.json and dev-v1.1.json from https://rajpurkar.github.io/SQuAD-explorer/"
source "$(dirname "$0")/_common.sh"
DATA=${1:-data/squad}
need "$DATA/train-v1.1.json" "$DATA/dev-v1.1.json"

"$GPT2KIT" train --task question-answering "${MODEL[@]}" \
  --train-file "$DATA/train-v1.1.json" --eval-file "$DATA/dev-v1.1.json" \
  --output-dir "$OUT/model" --epochs "${EPOCHS:-2}" --lr "${LR:-3e-5}" --batch-size 16 \
  --max-length 384 --stride 128 --max-answer-length 30 --seed "${SEED:-0}" \
  ${MAX_MINUTES:+--max-minutes "$MAX_MINUTES"}
"$GPT2KIT" evaluate --task question-answering --model "$OUT/model" --max-length 384 \
  --stride 128 --max-answer-length 30 --eval-file "$DATA/dev-v1.1.json" \
  --json "$OUT/dev_metrics.json" --predictions "$OUT/predictions.json"
# python evaluate-v1.1.py "$DATA/dev-v1.1.json" "$OUT/predictions.json"   # the same numbers x100
