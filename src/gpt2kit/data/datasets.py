"""`load_task_data`: one call from a data file to (dataset, collator, info) for any task.

    dataset, collator, info = load_task_data(task, path, tokenizer, **options)
    loader = DataLoader(dataset, batch_size=8, collate_fn=collator)
    model(**next(iter(loader))).loss          # batch keys are the forward's argument names
    fn = compute_metrics(task, **info["metrics"])   # gpt2kit.evaluation

`task` and what `path` holds:

| task | file | dataset items | collator |
|---|---|---|---|
| `causal-lm` | plain UTF-8 text (any size) | fixed blocks from memory-mapped token shards (`text_shards`) | `DataCollatorWithPadding(lm_labels=True)` |
| `sequence-classification` | CSV/TSV/JSONL: text, [text pair], label | `input_ids` (pair joined by EOS), `label` | `DataCollatorWithPadding` |
| `text-classification` | same | same | `PackedTextCollator` (packed rows) |
| `document-classification` | same (documents of any length, never truncated) | same | `DocumentCollator` |
| `token-classification` | CoNLL (or rows with `words`/`tokens` and `tags`/`ner_tags`) | windows of a sentence's BPE pieces: `input_ids`, `labels` (-100 off the scored pieces) | `tasks.token_alignment.TokenWindowCollator` |
| `question-answering` | SQuAD v1.1/v2.0 JSON (or flat JSONL rows) | `tasks.qa.QAFeature` windows | `QACollator` |
| `multiple-choice` | JSONL/CSV; generic, SWAG or Story Cloze columns | `context`, `choices`, `label` | `tasks.multiple_choice.MultipleChoiceCollator` |
| `seq2seq` | JSONL/CSV: source, target | `source_ids`, `target_ids` | `tasks.seq2seq.Seq2SeqCollator` |
| `conditional-generation` | same | same | `tasks.seq2seq.EncoderDecoderCollator` |

`path` may also be rows in memory (a list of dicts or a `datasets.Dataset`), except for
`causal-lm`, which reads a file.

`info` (a dict) carries what the caller keeps or passes on:

- `task`, `num_examples`, `num_features` (QA windows, LM blocks), `skipped` (bad examples
  skipped under `on_error="skip"`), `examples` (the `Records` read).
- classification and tagging: `id2label`, `label2id`, `num_labels`, `problem_type` — save
  them in the model config (`GPT2Config(id2label=..., problem_type=...)`).
- `metrics`: keyword arguments for `gpt2kit.evaluation.compute_metrics(task, **...)`
  (`id2label`; for QA `decode` (a callable: raw `(start_logits, end_logits)` -> answer per
  question id) and `references`; for token classification `decode` (window logits -> one
  tag per word of every sentence, `TagDecoder`) and `references` (the gold tags); for
  seq2seq `tokenizer`).

Options (all keyword): `max_length` (tokens per example; default 128 for classification,
384 for QA, the tokenizer's `model_max_length` otherwise), `on_error` (`"raise"` or
`"skip"`), `label_names`, the reader's column options (`text_column`, `label_column`,
`word_column`, `tag_column`, `source_column`, ...), and per task: causal-lm `block_size`,
`split` (`"train"`/`"validation"`/`"all"`), `validation_fraction`, `out_dir`, `progress`,
`window_stride` (perplexity windows, `SlidingWindowDataset`); token classification
`label_pieces`, `to_scheme`, `stride` (pieces shared by a long sentence's windows of
`max_length`; default half a window), `unknown_tags` (`"error"`, or `"score"`: a gold tag
outside `label_names` counts in the entity scores, not in the loss); QA `stride`,
`max_question_length`, `max_answer_length`; text classification `pack_length`.

Example:
    >>> from gpt2kit.tokenizer import GPT2Tokenizer
    >>> tok = GPT2Tokenizer.from_pretrained("gpt2")
    >>> rows = [{"text": "great", "label": "pos"}, {"text": "bad", "label": "neg"}]
    >>> ds, collate, info = load_task_data("sequence-classification", rows, tok)
    >>> collate([ds[0], ds[1]])["labels"].tolist(), info["id2label"]
    ([1, 0], {0: 'neg', 1: 'pos'})
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..tasks import registry
from ..tasks.qa import MAX_ANSWER_LENGTH, QAFeature, decode_spans, prepare_qa_features
from ..tasks.token_alignment import (
    IGNORE,
    align_labels_with_tokens,
    reading_pieces,
    window_spans,
)
from . import readers
from .readers import DataError, Records
from .text_shards import BlockDataset, tokenize_to_shards

logger = logging.getLogger("gpt2kit")

# the tasks with a data reader in the task registry (`gpt2kit.tasks.registry`)
TASKS = tuple(registry.names(reader=True))


class TaskDataset(Dataset):
    """Featurized examples of one task (a list in memory), indexable by the DataLoader.

    Example:
        >>> ds = TaskDataset([{"input_ids": [1, 2]}])
        >>> len(ds), ds[0]
        (1, {'input_ids': [1, 2]})
    """

    def __init__(self, features: Sequence[Any], examples: Records | None = None) -> None:
        self.features = list(features)
        self.examples = examples

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> Any:
        return self.features[index]


class QADecoder:
    """Turns the model's `(start_logits, end_logits)` over every feature into
    `{question id: answer text}` (`tasks.qa.decode_spans`); picklable.

    Example:
        >>> f = QAFeature(0, [1, 2, 3, 4], [None, None, (0, 3), (4, 7)], 1)
        >>> QADecoder([f], ["Ann Bob"], ["q1"])((torch.tensor([[0., 0, 5, 1]]), torch.tensor([[0., 0, 1, 5]])))
        {'q1': 'Ann Bob'}
    """

    def __init__(
        self,
        features: Sequence[QAFeature],
        contexts: Sequence[str],
        ids: Sequence[str],
        allow_no_answer: bool = False,
        max_answer_length: int = MAX_ANSWER_LENGTH,
        null_threshold: float = 0.0,
    ) -> None:
        self.features, self.contexts, self.ids = list(features), list(contexts), list(ids)
        self.allow_no_answer, self.max_answer_length, self.null_threshold = (
            allow_no_answer,
            max_answer_length,
            null_threshold,
        )

    def __call__(self, predictions: Any) -> dict[str, str]:
        start, end = (torch.as_tensor(x) for x in predictions[:2])
        if start.shape[0] != len(self.features):
            raise ValueError(
                f"{start.shape[0]} rows of start logits for {len(self.features)} QA features; "
                "evaluate on the dataset from the same load_task_data call, in order (no shuffling)"
            )
        preds = decode_spans(
            self.features,
            start,
            end,
            self.contexts,
            max_answer_length=self.max_answer_length,
            allow_no_answer=self.allow_no_answer,
            null_threshold=self.null_threshold,
        )
        return {qid: p.text for qid, p in zip(self.ids, preds)}


def _reader_options(reader: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """The options `reader` takes, removed from `options`."""
    names = set(inspect.signature(reader).parameters) - {"source"}
    return {k: options.pop(k) for k in list(options) if k in names}


def _collator(
    task: str,
    settings: dict[str, Any],
    later: dict[str, Callable[[], Any]] | None = None,
) -> Any:
    """The task's collator: the class the task registry names for it (`Task.collator`, the
    one source of that choice), given those of `settings` its constructor takes. `later`
    holds settings read from the caller's options: each is called (and so takes its
    option) only when the class takes it, so an option no part of the task uses stays
    unused and `load_task_data` names it."""
    cls = registry.resolve(registry.get(task).collator)
    takes = inspect.signature(cls).parameters
    given = {k: v for k, v in settings.items() if k in takes}
    given.update({k: read() for k, read in (later or {}).items() if k in takes})
    return cls(**given)


def _ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(x) for x in tokenizer(texts)["input_ids"]]


def _label_info(records: Records) -> dict[str, Any]:
    names = records.label_names
    info: dict[str, Any] = {"problem_type": records.problem_type}
    if names is not None:
        info.update(
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            num_labels=len(names),
        )
    else:
        info["num_labels"] = 1
    return info


def _classification(
    task: str, source: Any, tokenizer: Any, options: dict[str, Any]
) -> tuple[Any, Any, dict[str, Any]]:
    records = readers.read_classification(
        source, **_reader_options(readers.read_classification, options)
    )
    document = task == "document-classification"
    max_length = None if document else options.pop("max_length", 128)
    sep = options.pop("pair_separator_id", tokenizer.eos_token_id)
    texts = _ids(tokenizer, [r["text"] for r in records])
    pairs = (
        _ids(tokenizer, [r["text_pair"] for r in records])
        if records and "text_pair" in records[0]
        else None
    )
    features = []
    for i, (record, ids) in enumerate(zip(records, texts)):
        if pairs is not None:
            second = pairs[i]
            if max_length is not None:
                # Trim the longer text first, so both keep as much as possible.
                while len(ids) + len(second) + 1 > max_length and (ids or second):
                    if len(ids) >= len(second):
                        ids = ids[:-1]
                    else:
                        second = second[:-1]
            ids = [*ids, sep, *second]
        elif max_length is not None:
            ids = ids[:max_length]
        if not ids:
            raise DataError(
                f"example {i} has no tokens", records.source, None, "remove empty texts"
            )
        feature: dict[str, Any] = {"input_ids": ids}
        if "label" in record:
            feature["label"] = record["label"]
        features.append(feature)
    pack_default = min(tokenizer.model_max_length, 2 * (max_length or 128))
    collator = _collator(
        task,
        {"pad_token_id": tokenizer.pad_token_id or 0},
        {"pack_length": lambda: options.pop("pack_length", pack_default)},
    )
    info = _label_info(records)
    info["metrics"] = {"id2label": info.get("id2label"), "problem_type": info["problem_type"]}
    return TaskDataset(features, records), collator, info


class TagDecoder:
    """Turns the model's logits over every token-classification window into one tag per
    word of every sentence (the prediction of the piece that carries the word's label, in
    the one window that scores it); picklable.

    `windows[r]` is `(sentence index, [(word index, position in window r), ...])`; a word
    no window reads (a sentence with no tokens) is predicted `O`.

    Example:
        >>> d = TagDecoder([(0, [(0, 0), (1, 1)])], [2], {0: "O", 1: "B-PER"})
        >>> d(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
        [['B-PER', 'O']]
    """

    def __init__(
        self,
        windows: Sequence[tuple[int, Sequence[tuple[int, int]]]],
        num_words: Sequence[int],
        id2label: Mapping[Any, str],
    ) -> None:
        self.windows = [(int(i), [tuple(p) for p in pos]) for i, pos in windows]
        self.num_words = list(num_words)
        self.id2label = {int(k): str(v) for k, v in id2label.items()}

    def __call__(self, predictions: Any) -> list[list[str]]:
        scores = predictions[0] if isinstance(predictions, (tuple, list)) else predictions
        scores = torch.as_tensor(scores)
        if scores.shape[0] != len(self.windows):
            raise ValueError(
                f"{scores.shape[0]} rows of logits for {len(self.windows)} token-classification "
                "windows; evaluate on the dataset from the same load_task_data call, in order "
                "(no shuffling)"
            )
        ids = scores.argmax(-1) if scores.dim() == 3 else scores.long()
        out = [["O"] * n for n in self.num_words]
        for r, (sentence, positions) in enumerate(self.windows):
            row = ids[r].tolist()
            for word, pos in positions:
                out[sentence][word] = self.id2label.get(int(row[pos]), f"LABEL_{int(row[pos])}")
        return out


def token_label_names(*sources: Any, **reader_options: Any) -> list[str]:
    """The tag set of one or more token-classification files: `O` first, then sorted (what
    `load_task_data` picks for one file). `gpt2kit train` uses it on the training and
    evaluation files together, so a tag only the evaluation file has is still a label.

    Example:
        >>> token_label_names([{"words": ["a"], "tags": ["B-X"]}], [{"words": ["b"], "tags": ["O"]}])
        ['O', 'B-X']
        >>> token_label_names([{"words": ["a", "b"], "tags": [0, 10]}])[-2:]
        ['9', '10']
    """
    seen: set[str] = set()
    for source in sources:
        records = _read_tagged(source, dict(reader_options))
        seen.update(t for r in records for t in r["tags"])
    if seen and all(t.isdigit() for t in seen):  # integer tag ids: keep their order
        return [str(i) for i in range(max(int(t) for t in seen) + 1)]
    return (["O"] if "O" in seen else []) + sorted(seen - {"O"})


def _read_tagged(source: Any, options: dict[str, Any]) -> Records:
    if isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() not in (
        ".jsonl",
        ".json",
    ):
        return readers.read_conll(source, **_reader_options(readers.read_conll, options))
    return _tagged_rows(source, options)


def _token_classification(
    task: str, source: Any, tokenizer: Any, options: dict[str, Any]
) -> tuple[Any, Any, dict[str, Any]]:
    given = options.pop("label_names", None)
    unknown_tags = options.pop("unknown_tags", "error")
    if unknown_tags not in ("error", "score"):
        raise ValueError(f"unknown_tags={unknown_tags!r}; use 'error' or 'score'")
    # Read with the file's own tag set, then map onto the given one: a tag outside it is an
    # error naming the fix, or (unknown_tags="score", evaluating a trained model) a gold tag
    # that counts in the entity scores but not in the loss.
    records = _read_tagged(source, options)
    names = list(given) if given is not None else list(records.label_names or [])
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted({t for r in records for t in r["tags"] if t not in index})
    if unknown and unknown_tags == "error":
        raise DataError(
            f"tags {unknown} are not among the labels {names}",
            records.source,
            None,
            "pass every tag with --label-names (config key label_names) when training",
        )
    if unknown:
        logger.warning(
            "%s: tags %s are not among the model's labels; they are scored as gold tags the "
            "model cannot predict (and left out of the loss)",
            records.source,
            unknown,
        )
    b_to_i = {
        i: index["I-" + n[2:]]
        for i, n in enumerate(names)
        if n.startswith("B-") and "I-" + n[2:] in index
    }
    label_pieces = options.pop("label_pieces", "first")
    max_length = options.pop("max_length", None)
    stride = options.pop("stride", None)
    if max_length is not None and stride is None:
        stride = min(128, max_length // 2)
    texts = [list(r["words"]) for r in records]
    enc = tokenizer(texts, is_split_into_words=True) if texts else None
    features, windows = [], []
    for i, record in enumerate(records):
        ids = list(enc["input_ids"][i])
        if not ids:
            continue
        word_ids = enc.word_ids(i)
        labels = [index.get(t, IGNORE) for t in record["tags"]]
        record["labels"] = labels
        piece_labels = align_labels_with_tokens(word_ids, labels, label_pieces, b_to_i)
        read = reading_pieces(word_ids, label_pieces)
        spans = (
            window_spans(word_ids, max_length, stride)
            if max_length is not None
            else [(0, 0, len(ids))]
        )
        for start, score_from, end in spans:
            features.append(
                {
                    "input_ids": ids[start:end],
                    "labels": [
                        IGNORE if t < score_from else piece_labels[t] for t in range(start, end)
                    ],
                }
            )
            windows.append((i, [(w, p - start) for w, p in read.items() if score_from <= p < end]))
    records.label_names = names
    id2label = dict(enumerate(names))
    decode = TagDecoder(windows, [len(r["words"]) for r in records], id2label)
    info = {
        "id2label": id2label,
        "label2id": index,
        "num_labels": len(names),
        "num_features": len(features),
        "metrics": {
            "id2label": id2label,
            "decode": decode,
            "references": [list(r["tags"]) for r in records],
        },
    }
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TaskDataset(features, records), _collator(task, {"pad_token_id": pad}), info


def _tagged_rows(source: Any, options: dict[str, Any]) -> Records:
    """Token classification rows (`words`/`tokens` + `tags`/`ner_tags`: names or ids)."""
    label_names = options.pop("label_names", None)
    on_error = options.pop("on_error", "raise")
    issues = readers._Issues(readers._source_name(source), on_error)
    raw = []
    for line, row in readers.iter_rows(source, issues):
        words = row.get("words", row.get("tokens"))
        tags = row.get("tags", row.get("ner_tags"))
        if words is None or tags is None:
            raise issues.error(
                f"no words/tags columns among {sorted(row)}",
                line,
                "name them 'words' (or 'tokens') and 'tags' (or 'ner_tags')",
            )
        if len(words) != len(tags):
            issues.report(
                issues.error(
                    f"{len(words)} words but {len(tags)} tags", line, "give one tag per word"
                )
            )
            continue
        raw.append((line, list(words), list(tags)))
    names = list(label_names) if label_names is not None else None
    if names is None:
        seen = {t for _, _, ts in raw for t in ts}
        if all(isinstance(t, int) for t in seen):
            names = [str(i) for i in range(max(seen, default=-1) + 1)]
        else:
            names = (["O"] if "O" in seen else []) + sorted({str(t) for t in seen} - {"O"})
    index = {n: i for i, n in enumerate(names)}
    records = Records(source=issues.source)
    for line, words, tags in raw:
        try:
            labels = [
                t if isinstance(t, int) and 0 <= t < len(names) else index[str(t)] for t in tags
            ]
        except KeyError as err:
            issues.report(
                issues.error(
                    f"unknown tag {err.args[0]!r}; known: {names}", line, "add it to label_names"
                )
            )
            continue
        records.append({"words": words, "tags": [names[i] for i in labels], "labels": labels})
    records.label_names = names
    return issues.finish(records)


def _question_answering(
    task: str, source: Any, tokenizer: Any, options: dict[str, Any]
) -> tuple[Any, Any, dict[str, Any]]:
    records = readers.read_squad(source, **_reader_options(readers.read_squad, options))
    features = prepare_qa_features(
        tokenizer,
        [r["question"] for r in records],
        [r["context"] for r in records],
        [r["answers"] for r in records],
        max_length=options.pop("max_length", 384),
        stride=options.pop("stride", 128),
        max_question_length=options.pop("max_question_length", 64),
    )
    v2 = any(r["is_impossible"] for r in records)
    decode = QADecoder(
        features,
        [r["context"] for r in records],
        [r["id"] for r in records],
        allow_no_answer=options.pop("allow_no_answer", v2),
        max_answer_length=options.pop("max_answer_length", MAX_ANSWER_LENGTH),
    )
    references = {r["id"]: list(r["answers"]["text"]) for r in records}
    info = {
        "num_features": len(features),
        "version_2_with_negative": v2,
        "metrics": {
            "decode": decode,
            "references": references,
            "squad_version": "2.0" if v2 else "1.1",
        },
    }
    collator = _collator(task, {"pad_token_id": tokenizer.pad_token_id or 0})
    return TaskDataset(features, records), collator, info


def _multiple_choice(
    task: str, source: Any, tokenizer: Any, options: dict[str, Any]
) -> tuple[Any, Any, dict[str, Any]]:
    records = readers.read_multiple_choice(
        source, **_reader_options(readers.read_multiple_choice, options)
    )
    collator = _collator(
        task, {"tokenizer": tokenizer}, {"max_length": lambda: options.pop("max_length", None)}
    )
    return (
        TaskDataset(list(records), records),
        collator,
        {"num_choices": len(records[0]["choices"]), "metrics": {}},
    )


def _seq2seq(
    task: str, source: Any, tokenizer: Any, options: dict[str, Any]
) -> tuple[Any, Any, dict[str, Any]]:
    records = readers.read_seq2seq(source, **_reader_options(readers.read_seq2seq, options))
    sources = _ids(tokenizer, [r["source"] for r in records])
    targets = _ids(tokenizer, [r.get("target", "") for r in records])
    features = [{"source_ids": s, "target_ids": t} for s, t in zip(sources, targets)]
    eos = tokenizer.eos_token_id
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    collator = _collator(
        task,
        {
            "sep_token_id": eos,  # (decoder-only: GPT-2 has no SEP; EOS separates)
            "eos_token_id": eos,
            "pad_token_id": tokenizer.pad_token_id or 0,
            "decoder_start_token_id": start,  # (encoder-decoder)
        },
        {
            "max_length": lambda: options.pop("max_length", None),
            "max_source_length": lambda: options.pop(
                "max_source_length", options.pop("max_length", None)
            ),
            "max_target_length": lambda: options.pop("max_target_length", None),
        },
    )
    info = {
        "references": [r.get("target", "") for r in records],
        "metrics": {"tokenizer": tokenizer},
    }
    return TaskDataset(features, records), collator, info


class SlidingWindowDataset(Dataset):
    """Perplexity windows over a token corpus, each token scored once: the sliding-window
    method of the GPT-2 paper and transformers' perplexity guide.

    Window `i` reads tokens `[i * stride, i * stride + block_size)` (the last one stops at
    the end of the split, so no token is left out); its labels are `-100` on the tokens an
    earlier window already scored, so each token after the first is predicted exactly once,
    with at least `block_size - stride` tokens of context after the first window.
    `stride == block_size` is non-overlapping blocks (each block's first token then has no
    context, as in training).

    Items are `{"input_ids": LongTensor[n], "labels": LongTensor[n]}` (`n <= block_size`).

    Example:
        >>> import tempfile, os
        >>> from gpt2kit.tokenizer import GPT2Tokenizer
        >>> p = os.path.join(tempfile.mkdtemp(), "c.txt")
        >>> _ = open(p, "w").write("word " * 10)
        >>> shards = tokenize_to_shards(p, GPT2Tokenizer.from_pretrained("gpt2"), progress=False)
        >>> ds = SlidingWindowDataset(shards, block_size=6, stride=2)
        >>> len(ds), ds[1]["labels"].tolist()[:4], len(ds[2]["input_ids"])
        (4, [-100, -100, -100, -100], 6)
    """

    def __init__(
        self,
        shards: Any,
        block_size: int,
        stride: int | None = None,
        split: str = "all",
        validation_fraction: float = 0.1,
    ) -> None:
        blocks = BlockDataset(shards, 1, split=split, validation_fraction=validation_fraction)
        self.shards, self.start, self.end = blocks.shards, blocks.start, blocks.end
        stride = block_size if stride is None else stride
        if block_size < 2:
            raise ValueError(f"block_size={block_size}; a window needs at least 2 tokens")
        if not 0 < stride <= block_size:
            raise ValueError(
                f"stride={stride}; use 1..block_size ({block_size}): the step between windows"
            )
        self.block_size, self.stride = block_size, stride
        n = self.end - self.start
        # windows until one reaches the end
        self.num_windows = 1 if n <= block_size else 1 + math.ceil((n - block_size) / stride)

    def __len__(self) -> int:
        return self.num_windows

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.num_windows:
            raise IndexError(f"window {index} of {self.num_windows}")
        begin = self.start + index * self.stride
        end = min(begin + self.block_size, self.end)
        ids = torch.from_numpy(np.asarray(self.shards.tokens(begin, end))).long()
        labels = ids.clone()
        if index:
            # tokens before the previous window's end were scored by it
            prev_end = min(begin - self.stride + self.block_size, self.end)
            labels[: prev_end - begin] = IGNORE
        return {"input_ids": ids, "labels": labels}


def _causal_lm(
    task: str, source: Any, tokenizer: Any, options: dict[str, Any]
) -> tuple[Any, Any, dict[str, Any]]:
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            "causal-lm reads a text file; pass its path (write in-memory text to a file first)"
        )
    shards = tokenize_to_shards(
        source,
        tokenizer,
        out_dir=options.pop("out_dir", None),
        progress=options.pop("progress", True),
        on_error=options.pop("on_error", "raise"),
        on_mismatch=options.pop("on_mismatch", "retokenize"),
    )
    block_size = options.pop(
        "block_size", options.pop("max_length", min(1024, tokenizer.model_max_length))
    )
    window_stride = options.pop("window_stride", None)
    if window_stride is not None:
        dataset: Any = SlidingWindowDataset(
            shards,
            block_size,
            window_stride,
            split=options.pop("split", "all"),
            validation_fraction=options.pop("validation_fraction", 0.1),
        )
        info = {
            "num_tokens": shards.num_tokens,
            "num_features": len(dataset),
            "skipped": shards.skipped_lines,
            "shards": str(shards.directory),
            "metrics": {},
        }
        return dataset, _lm_collator(task, tokenizer), info
    dataset = BlockDataset(
        shards,
        block_size,
        split=options.pop("split", "train"),
        validation_fraction=options.pop("validation_fraction", 0.1),
        stride=options.pop("stride", None),
        num_samples=options.pop("num_samples", None),
        seed=options.pop("seed", 0),
    )
    info = {
        "num_tokens": shards.num_tokens,
        "num_features": len(dataset),
        "skipped": shards.skipped_lines,
        "shards": str(shards.directory),
        "metrics": {},
    }
    return dataset, _lm_collator(task, tokenizer), info


def _lm_collator(task: str, tokenizer: Any) -> Any:
    """Blocks padded, labels = the input ids (the LM heads shift them)."""
    return _collator(task, {"pad_token_id": tokenizer.pad_token_id or 0, "lm_labels": True})


def load_task_data(
    task: str, path: Any, tokenizer: Any, **options: Any
) -> tuple[Dataset, Callable[[list[Any]], dict[str, Any]], dict[str, Any]]:
    """Read a task's data file, featurize it, and return `(dataset, collator, info)`.

    See the module docstring for the tasks, file layouts, options and `info` keys.

    Args:
        task: one of `TASKS`.
        path: the data file, or rows in memory (list of dicts, `datasets.Dataset`).
        tokenizer: a `GPT2Tokenizer`.
        **options: reader and featurization options; an unknown option is a `TypeError`.

    Example:
        >>> from gpt2kit.tokenizer import GPT2Tokenizer
        >>> rows = [{"context": "He sat.", "choices": ["He slept.", "He flew."], "label": 0}]
        >>> ds, collate, info = load_task_data("multiple-choice", rows, GPT2Tokenizer.from_pretrained("gpt2"))
        >>> collate([ds[0]])["input_ids"].shape
        torch.Size([1, 2, 6])
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {TASKS}")
    options = dict(options)
    reader = registry.resolve(registry.get(task).reader)
    dataset, collator, info = reader(task, path, tokenizer, options)
    if options:
        raise TypeError(f"load_task_data({task!r}) got options it does not use: {sorted(options)}")
    examples = getattr(dataset, "examples", None)
    info.setdefault("num_features", len(dataset))
    info.setdefault("skipped", examples.skipped if examples is not None else 0)
    info.update(
        task=task,
        num_examples=len(examples) if examples is not None else len(dataset),
        examples=examples,
    )
    return dataset, collator, info


def as_metric_options(info: Mapping[str, Any]) -> dict[str, Any]:
    """`info["metrics"]` without `None` values: `compute_metrics(task, **as_metric_options(info))`.

    Example:
        >>> as_metric_options({"metrics": {"id2label": None, "problem_type": "regression"}})
        {'problem_type': 'regression'}
    """
    return {k: v for k, v in info.get("metrics", {}).items() if v is not None}
