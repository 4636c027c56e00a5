"""What a loaded model can serve, and the batched task functions behind the task endpoints.

Each function takes a list of request items and returns one JSON-ready result per item;
the batcher calls it in its worker thread with every item that arrived together.
Classification, tagging, question answering and multiple choice go through
`gpt2kit.pipeline` when that module is installed (one source of truth for label
mapping, word alignment and span decoding); a small direct implementation is the
fallback. Scoring and embedding are direct: they are one forward each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from ..models.lm import GPT2ForCausalLM
from ..tasks import registry

logger = logging.getLogger("gpt2kit.serve")


def _class_endpoints() -> dict[str, tuple[str, ...]]:
    """Model class name -> endpoints, from the task registry's `endpoints` fields."""
    table: dict[str, tuple[str, ...]] = {}
    for task in registry.TASKS:
        if task.model_class and task.endpoints:
            for name in (task.model_class, *task.other_classes):
                table[name] = tuple(dict.fromkeys((*table.get(name, ()), *task.endpoints)))
    return table


def supported_tasks(model: Any) -> list[str]:
    """Endpoint names (`completions`, `classify`, ...) the model's class can serve."""
    name = type(model).__name__
    tasks = list(_class_endpoints().get(name, ()))
    if hasattr(model, "transformer") or name == "GPT2Model":
        tasks.append("embed")
    return tasks


_PIPELINE_TASK = registry.ENDPOINT_PIPELINES


class TaskRunner:
    """Builds (once) and runs the batched function of each task for one model."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model
        self.tokenizer = tokenizer
        self._pipes: dict[str, Any] = {}

    def function(self, task: str) -> Callable[[list[Any]], list[Any]]:
        return getattr(self, f"_{task}")

    def _pipeline(self, task: str) -> Any | None:
        if task not in self._pipes:
            try:  # (imported on first use: a task endpoint nobody calls costs nothing)
                from ..pipelines import pipeline
            except ImportError:
                self._pipes[task] = None
            else:
                self._pipes[task] = pipeline(
                    _PIPELINE_TASK[task], model=self.model, tokenizer=self.tokenizer
                )
        return self._pipes[task]

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and mask `[B, T]` (padding never changes a row's result)."""
        seqs = [self.tokenizer.encode(t) or [self.tokenizer.eos_token_id] for t in texts]
        T = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), T, dtype=torch.long)
        mask = torch.zeros(len(seqs), T, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return ids.to(self._device()), mask.to(self._device())

    # -- tasks ----------------------------------------------------------------------------
    def _score(self, items: list[dict]) -> list[dict]:
        # `score` is defined on GPT2ForCausalLM; GPT2LMHeadModel has the same weights.
        out = GPT2ForCausalLM.score(self.model, [it["text"] for it in items], self.tokenizer)
        return [
            {
                "logprob": float(out.total_logprob[i]),
                "tokens": int(out.num_tokens[i]),
                "perplexity": float(out.perplexity[i]),
                "token_logprobs": [float(x) for x in out.token_logprobs[i]],
            }
            for i in range(len(items))
        ]

    def _embed(self, items: list[dict]) -> list[dict]:
        backbone = getattr(self.model, "transformer", self.model)
        ids, mask = self._encode([it["text"] for it in items])
        hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        m = mask[..., None].float()
        pooled = (hidden * m).sum(1) / m.sum(1)  # mean over real tokens
        return [{"embedding": v.tolist()} for v in pooled.cpu()]

    def _embeddings(self, items: list[dict]) -> list[list[float]]:
        """OpenAI embeddings of token-id inputs: the mean of the backbone's final hidden
        states (after `ln_f`) over the input's tokens, scaled to length 1 (as OpenAI's
        are, so a dot product is the cosine similarity)."""
        backbone = getattr(self.model, "transformer", self.model)
        seqs = [it["ids"] for it in items]
        T = max(len(s) for s in seqs)
        device = self._device()
        ids = torch.zeros(len(seqs), T, dtype=torch.long)
        mask = torch.zeros(len(seqs), T, dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding: positions stay 0..len-1
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        hidden = backbone(input_ids=ids.to(device), attention_mask=mask.to(device))
        hidden = hidden.last_hidden_state.float()
        m = mask.to(device)[..., None].float()
        pooled = (hidden * m).sum(1) / m.sum(1)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return [v.tolist() for v in pooled.cpu()]

    def _labels(self) -> dict[int, str]:
        id2label = getattr(self.model.config, "id2label", None) or {}
        return {int(k): str(v) for k, v in id2label.items()}

    def _classify(self, items: list[dict]) -> list[Any]:
        pipe = self._pipeline("classify")
        if pipe is not None:
            return [_jsonable(r) for r in pipe([it["text"] for it in items], top_k=None)]
        ids, mask = self._encode([it["text"] for it in items])
        probs = self.model(input_ids=ids, attention_mask=mask).logits.float().softmax(-1).cpu()
        names = self._labels()
        return [
            sorted(
                (
                    {"label": names.get(j, f"LABEL_{j}"), "score": float(p)}
                    for j, p in enumerate(row)
                ),
                key=lambda d: -d["score"],
            )
            for row in probs
        ]

    def _tag(self, items: list[dict]) -> list[Any]:
        pipe = self._pipeline("tag")
        if pipe is not None:
            # One call per text: a list of strings means pre-split words to this pipeline.
            return [_jsonable(pipe(it["text"])) for it in items]
        results = []
        names = self._labels()
        for it in items:
            enc = self.tokenizer(it["text"], return_offsets_mapping=True)
            ids = torch.tensor([enc["input_ids"]], device=self._device())
            probs = self.model(input_ids=ids).logits.float().softmax(-1)[0].cpu()
            tags = []
            for (start, end), row in zip(enc["offset_mapping"], probs):
                j = int(row.argmax())
                tags.append(
                    {
                        "word": it["text"][start:end],
                        "start": start,
                        "end": end,
                        "entity": names.get(j, f"LABEL_{j}"),
                        "score": float(row[j]),
                    }
                )
            results.append(tags)
        return results

    def _answer(self, items: list[dict]) -> list[Any]:
        pipe = self._pipeline("answer")
        if pipe is not None:
            out = pipe(
                question=[it["question"] for it in items], context=[it["context"] for it in items]
            )
            return [_jsonable(r) for r in (out if isinstance(out, list) else [out])]
        results = []
        for it in items:
            # Question first: a causal model must read it before the context.
            q = self.tokenizer.encode(it["question"] + "\n")
            enc = self.tokenizer(it["context"], return_offsets_mapping=True)
            ids = torch.tensor([q + enc["input_ids"]], device=self._device())
            out = self.model(input_ids=ids)
            start = out.start_logits[0, len(q) :].float().cpu()
            end = out.end_logits[0, len(q) :].float().cpu()
            n = start.shape[0]
            scores = start[:, None] + end[None, :]
            valid = torch.ones(n, n, dtype=torch.bool).triu() & ~torch.ones(
                n, n, dtype=torch.bool
            ).triu(30)
            scores = scores.masked_fill(~valid, -1e9)
            best = int(scores.argmax())
            s, e = divmod(best, n)
            offsets = enc["offset_mapping"]
            a, b = offsets[s][0], offsets[e][1]
            results.append(
                {
                    "answer": it["context"][a:b],
                    "start": a,
                    "end": b,
                    "score": float(scores.flatten().softmax(0)[best]),
                }
            )
        return results

    def _choose(self, items: list[dict]) -> list[Any]:
        pipe = self._pipeline("choose")
        if pipe is not None:
            return [_jsonable(pipe(it["prompt"], it["choices"])) for it in items]
        results = []
        for it in items:
            ids, mask = self._encode([it["prompt"] + c for c in it["choices"]])
            if type(self.model).__name__ == "GPT2DoubleHeadsModel":
                mc = (mask.sum(1) - 1)[None]
                logits = self.model(
                    input_ids=ids[None], attention_mask=mask[None], mc_token_ids=mc
                ).mc_logits
            else:
                logits = self.model(input_ids=ids[None], attention_mask=mask[None]).logits
            probs = logits.float().softmax(-1)[0].cpu()
            best = int(probs.argmax())
            results.append(
                {"choice": best, "text": it["choices"][best], "scores": [float(p) for p in probs]}
            )
        return results


def _jsonable(value: Any) -> Any:
    """Pipeline results with tensors / numpy numbers turned into plain JSON values."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
