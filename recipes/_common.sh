# Shared by the dataset recipes (sourced, not run). Sets:
#   GPT2KIT  the command (default: .venv/bin/gpt2kit, else gpt2kit on PATH)
#   MODEL    the model flags: $PRETRAINED (a local GPT-2 folder, e.g. one `gpt2kit convert`
#            wrote from a downloaded gpt2) when set, else a tiny GPT-2 from scratch, so a
#            recipe runs offline (the numbers are then the tiny model's, far below 124M's)
#   OUT      where models and predictions go (default runs/<recipe>)
# and `need FILE...`: stop with a message naming the file and where the dataset comes from.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${GPT2KIT:-}" ]]; then
  if [[ -x .venv/bin/gpt2kit ]]; then GPT2KIT=.venv/bin/gpt2kit; else GPT2KIT=gpt2kit; fi
fi
TINY=(--model gpt2 --from-scratch --n-layer "${N_LAYER:-4}" --n-embd "${N_EMBD:-256}"
      --n-head "${N_HEAD:-4}" --n-positions "${N_POSITIONS:-256}")
if [[ -n "${PRETRAINED:-}" ]]; then MODEL=(--model "$PRETRAINED"); else MODEL=("${TINY[@]}"); fi
OUT=${OUT:-runs/$(basename "$0" .sh)}
mkdir -p "$OUT"

need() {
  for f in "$@"; do
    if [[ ! -f "$f" ]]; then
      echo "missing $f: $SOURCE_HINT" >&2
      exit 1
    fi
  done
}
