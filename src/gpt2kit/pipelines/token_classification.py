"""Token classification (`token-classification`, alias `ner`): a label per token, grouped into entities."""

from __future__ import annotations

from typing import Any

import torch

from ..tasks.token_alignment import window_spans
from .base import Pipeline, label_name

AGGREGATIONS = ("none", "simple", "first", "average", "max")


def _bi_tag(entity: str) -> tuple[str, str]:
    """`B-PER` -> (`B`, `PER`); a label without a B-/I- prefix continues like an I- tag."""
    if entity[:2] in ("B-", "I-"):
        return entity[0], entity[2:]
    return "I", entity


def _group(tokens: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Merge neighbouring tokens/words into entities, as `transformers` does: a B- tag or
    a change of type starts a new entity; the score is the mean of its members'."""
    groups: list[list[dict[str, Any]]] = []
    for tok in tokens:
        bi, tag = _bi_tag(tok["entity"])
        if groups and bi != "B" and _bi_tag(groups[-1][-1]["entity"])[1] == tag:
            groups[-1].append(tok)
        else:
            groups.append([tok])
    out = []
    for g in groups:
        start, end = g[0]["start"], g[-1]["end"]
        out.append(
            {
                "entity_group": _bi_tag(g[0]["entity"])[1],
                "score": sum(t["score"] for t in g) / len(g),
                "word": text[start:end],
                "start": start,
                "end": end,
            }
        )
    return out


def aggregate_entities(
    probs: torch.Tensor,
    offsets: list[tuple[int, int]],
    word_ids: list[int | None],
    text: str,
    id2label: dict[int, str] | Any,
    aggregation: str = "none",
    ignore_labels: tuple[str, ...] = ("O",),
) -> list[dict[str, Any]]:
    """Entities from per-token probabilities `[T, num_labels]` (the `transformers` rules).

    - `none`: one result per token, `{"entity", "score", "index", "word", "start", "end"}`.
    - `simple`: tokens grouped by tag (`B-X I-X` -> one `X`), `{"entity_group", ...}`.
    - `first` / `average` / `max`: first a label per word (its first token's; the argmax of
      its tokens' mean probabilities; the label of its most confident token), then words
      grouped like `simple`. A word never gets two labels.

    Results labelled with one of `ignore_labels` are dropped.

    Example:
        >>> probs = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05]])
        >>> names = {0: "O", 1: "B-PER", 2: "I-PER"}
        >>> ents = aggregate_entities(probs, [(0, 3), (4, 7), (8, 10)], [0, 1, 2], "Ann Lee is", names, "simple")
        >>> [(e["entity_group"], e["word"]) for e in ents]
        [('PER', 'Ann Lee')]
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(
            f"aggregation_strategy must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}"
        )
    names = {int(k): str(v) for k, v in (id2label or {}).items()}

    def name(j: int) -> str:
        return names.get(j, f"LABEL_{j}")

    tokens = []
    for t, (row, (start, end)) in enumerate(zip(probs, offsets)):
        if word_ids[t] is None:
            continue
        j = int(row.argmax())
        tokens.append(
            {
                "entity": name(j),
                "score": float(row[j]),
                "index": t,
                "word": text[start:end],
                "start": start,
                "end": end,
                "_probs": row,
                "_word": word_ids[t],
            }
        )
    if aggregation == "none":
        entities = [{k: v for k, v in tok.items() if not k.startswith("_")} for tok in tokens]
        return [e for e in entities if e["entity"] not in ignore_labels]
    if aggregation != "simple":
        words: list[list[dict[str, Any]]] = []
        for tok in tokens:
            if words and words[-1][-1]["_word"] == tok["_word"]:
                words[-1].append(tok)
            else:
                words.append([tok])
        merged = []
        for w in words:
            if aggregation == "first":
                row = w[0]["_probs"]
            elif aggregation == "max":
                row = max(w, key=lambda tok: tok["score"])["_probs"]
            else:
                row = torch.stack([tok["_probs"] for tok in w]).mean(0)
            j = int(row.argmax())
            start, end = w[0]["start"], w[-1]["end"]
            merged.append({"entity": name(j), "score": float(row[j]), "start": start, "end": end})
        tokens = merged
    return [e for e in _group(tokens, text) if e["entity_group"] not in ignore_labels]


class TokenClassificationPipeline(Pipeline):
    """Tag the tokens of texts (NER, POS) with `GPT2ForTokenClassification`.

    Inputs: a string (offsets are character positions in it), or with
    `is_split_into_words=True` a list of words (offsets are positions in the words joined
    by single spaces; each result also says which `word` it covers). Options:
    `aggregation_strategy` (`none`, `simple`, `first`, `average`, `max`; see
    `aggregate_entities`), `ignore_labels` (default `("O",)`), `max_length` (tokens per
    window, default `n_positions`) and `stride` (tokens shared by windows, default half a
    window): a text longer than the window is read in windows and tagged whole, each token
    by the one window that scores it.

    Example:
        >>> import tempfile
        >>> from gpt2kit import GPT2Config
        >>> from gpt2kit.models.token_classification import GPT2ForTokenClassification
        >>> folder = tempfile.mkdtemp()
        >>> cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, id2label={0: "O", 1: "B-PER", 2: "I-PER"})
        >>> _ = GPT2ForTokenClassification(cfg).save_pretrained(folder)
        >>> tag = TokenClassificationPipeline(folder, aggregation_strategy="simple")
        >>> isinstance(tag("Ann Lee sings"), list)
        True
    """

    task = "token-classification"

    def __call__(self, inputs: Any, **options: Any) -> Any:
        params = self._params(options)
        # With pre-split words one input is a list of words; a batch is a list of such lists.
        words = isinstance(inputs, (list, tuple)) and all(isinstance(w, str) for w in inputs)
        if params.get("is_split_into_words") and words:
            return self._run_batch([list(inputs)], params)[0]
        return super().__call__(inputs, **options)

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, str)

    @torch.inference_mode()
    def _run_batch(self, inputs: list[Any], params: dict[str, Any]) -> list[Any]:
        split = bool(params.get("is_split_into_words"))
        texts, encodings = [], []
        for item in inputs:
            if split:
                words = [str(w) for w in item]
                enc = self.tokenizer(words, is_split_into_words=True, return_offsets_mapping=True)
                # Offsets come per word; shift them into the words joined by single spaces.
                starts, pos = [], 0
                for w in words:
                    starts.append(pos)
                    pos += len(w) + 1
                wids = enc.word_ids(0)
                offsets = [
                    (s + starts[w], e + starts[w]) if w is not None else (0, 0)
                    for (s, e), w in zip(enc["offset_mapping"], wids)
                ]
                texts.append(" ".join(words))
            else:
                enc = self.tokenizer(item, return_offsets_mapping=True)
                wids, offsets = enc.word_ids(0), [tuple(o) for o in enc["offset_mapping"]]
                texts.append(item)
            encodings.append((list(enc["input_ids"]), offsets, wids))
        # Texts longer than the model's window are read in windows overlapping by half a
        # window (`tasks.token_alignment.window_spans`); each token takes its probabilities
        # from the one window that scores it, so nothing is cut off.
        n = int(params.get("max_length", self.model.config.n_positions))
        stride = int(params.get("stride", n // 2))
        rows, owners = [], []  # model inputs; (text, start, score_from, end) per row
        for i, (row_ids, _offsets, wids) in enumerate(encodings):
            if not row_ids:
                rows.append([self.tokenizer.eos_token_id])
                owners.append((i, 0, 0, 0))
                continue
            for start, score_from, end in window_spans(wids, n, stride):
                rows.append(row_ids[start:end])
                owners.append((i, start, score_from, end))
        pieces: list[list[torch.Tensor]] = [[] for _ in encodings]
        for b in range(0, len(rows), max(1, self.batch_size)):
            ids, mask = self._pad(rows[b : b + self.batch_size])
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            probs_b = logits.float().softmax(-1).cpu()
            for r, (i, start, score_from, end) in enumerate(owners[b : b + self.batch_size]):
                pieces[i].append(probs_b[r, score_from - start : end - start])
        strategy = params.get("aggregation_strategy", "none")
        ignore = tuple(params.get("ignore_labels", ("O",)))
        results = []
        for r, (text, (row_ids, offsets, wids)) in enumerate(zip(texts, encodings)):
            ents = aggregate_entities(
                torch.cat(pieces[r])[: len(row_ids)],
                offsets,
                wids,
                text,
                self.model.config.id2label,
                strategy,
                ignore,
            )
            if split:
                for e in ents:
                    e["word_index"] = text[: e["start"]].count(" ")
            results.append(ents)
        return results

    def labels(self) -> list[str]:
        """The model's label names, in id order."""
        return [label_name(self.model.config, j) for j in range(self.model.config.num_labels)]
