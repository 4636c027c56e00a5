#!/usr/bin/env bash
# Language modeling from scratch on Tiny Shakespeare through `gpt2kit train` (issue 5's proof).
#
# GPT-2 tokenizer, 4 layers x 256 wide, 4 heads, 128-token blocks, the last 10% of the text
# held out (--validation-fraction 0.1). The README reports the validation loss reached and
# the minutes taken; the log is OUT/log.jsonl.
#
# Usage: recipes/tinyshakespeare_lm.sh [PATH/TO/tinyshakespeare.txt] [OUT_DIR] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/tinyshakespeare.txt}
OUT=${2:-runs/tinyshakespeare}
STEPS=${3:-300}
GPT2KIT=${GPT2KIT:-.venv/bin/gpt2kit}

start=$(date +%s)
"$GPT2KIT" train --task causal-lm --model gpt2 --from-scratch \
  --n-layer 4 --n-embd 256 --n-head 4 --n-positions 128 --block-size 128 \
  --train-file "$DATA" --validation-fraction 0.1 --output-dir "$OUT" \
  --batch-size 16 --lr 1e-3 --warmup-steps 30 --schedule cosine --max-steps "$STEPS" \
  --eval-steps 100 --save-steps 100000 --logging-steps 10 --seed 1337 --no-progress
echo "minutes: $(( ($(date +%s) - start) / 60 ))"
