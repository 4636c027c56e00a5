#!/usr/bin/env bash
# CoNLL-2003 English NER with a token-classification head, scored by conlleval.
#
# Data: the shared task's files as distributed (eng.train, eng.testa, eng.testb; the Reuters
# text needs its licence): `word POS chunk NER` per line, blank lines between sentences,
# -DOCSTART- lines between documents, tags in IOB1 (I-PER unless a PER follows a PER).
# Read as is, in IOB1; the model predicts IOB1 tags and conlleval scores them. Sentences
# longer than --max-length pieces are read in overlapping windows and scored whole.
#
# Usage: recipes/conll2003.sh [folder with eng.train eng.testa eng.testb]
#
# Reported for a pretrained GPT-2 124M: we found no figure with a primary source (a causal
# model tags each word from its left context only, below bidirectional encoders' ~0.91-0.92
# test F1 for BERT-base); community checkpoints such as
# huggingface.co/MrRobson9/gpt2-ner-conll2003-english exist. Record yours here.
# A tiny model from scratch: not measured here (the data is not on the build machines).
SOURCE_HINT="get the CoNLL-2003 English files (https://www.clips.uantwerpen.be/conll2003/ner/) and pass their folder"
source "$(dirname "$0")/_common.sh"
DATA=${1:-data/conll2003}
need "$DATA/eng.train" "$DATA/eng.testa" "$DATA/eng.testb"
TAGS=O,B-PER,I-PER,B-LOC,I-LOC,B-ORG,I-ORG,B-MISC,I-MISC

"$GPT2KIT" train --task token-classification "${MODEL[@]}" \
  --train-file "$DATA/eng.train" --eval-file "$DATA/eng.testa" --output-dir "$OUT/model" \
  --label-names "$TAGS" --epochs "${EPOCHS:-3}" --lr "${LR:-5e-5}" --batch-size 16 \
  --max-length 128 --eval-steps 1000 --metric-for-best-model entity_f1 --greater-is-better \
  --load-best-model-at-end --seed "${SEED:-0}" ${MAX_MINUTES:+--max-minutes "$MAX_MINUTES"}
for split in testa testb; do
  "$GPT2KIT" evaluate --task token-classification --model "$OUT/model" --max-length 128 \
    --eval-file "$DATA/eng.$split" --json "$OUT/$split.json" --predictions "$OUT/$split.conll"
  # the official scorer reads the predictions file: perl conlleval < "$OUT/$split.conll"
done
