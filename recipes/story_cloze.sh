#!/usr/bin/env bash
# Story Cloze Test (ROCStories) with a multiple-choice head.
#
# Data: the Story Cloze CSVs as distributed (https://cs.rochester.edu/nlp/rocstories/, by
# request): InputStoryid, InputSentence1..4, RandomFifthSentenceQuiz1,
# RandomFifthSentenceQuiz2, AnswerRightEnding (1 or 2). The ROCStories training stories have
# no wrong endings, so, as GPT-1 did, train on the spring 2016 validation set and test on
# the test set. Read as is: the columns are recognised, AnswerRightEnding 1/2 becomes label
# 0/1, and --predictions writes the chosen ending's index from 0.
#
# Usage: recipes/story_cloze.sh VAL.csv TEST.csv
#
# Reported: GPT-1 (117M, the same shape as GPT-2 124M) fine-tuned: 86.5 test accuracy
#   (Radford et al. 2018, table 3). For GPT-2 124M itself we found no fine-tuned figure
#   with a source. A tiny model from scratch: not measured here (no data on the machines).
SOURCE_HINT="request the Story Cloze files at https://cs.rochester.edu/nlp/rocstories/ and pass VAL.csv TEST.csv"
source "$(dirname "$0")/_common.sh"
VAL=${1:-data/story_cloze/cloze_test_val__spring2016.csv}
TEST=${2:-data/story_cloze/cloze_test_test__spring2016.csv}
need "$VAL" "$TEST"

"$GPT2KIT" train --task multiple-choice "${MODEL[@]}" --train-file "$VAL" --eval-file "$TEST" \
  --output-dir "$OUT/model" --epochs "${EPOCHS:-3}" --lr "${LR:-6.25e-5}" --batch-size 8 \
  --max-length 128 --seed "${SEED:-0}" ${MAX_MINUTES:+--max-minutes "$MAX_MINUTES"}
"$GPT2KIT" evaluate --task multiple-choice --model "$OUT/model" --eval-file "$TEST" \
  --json "$OUT/test_metrics.json" --predictions "$OUT/test.choices"
