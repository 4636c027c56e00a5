"""Text generation (`text-generation`) and source-to-target generation (`summarization`, `text2text`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..generation import generate, stream_generate
from .base import Pipeline, logger

# Options that belong to the pipeline, not to `GenerationConfig`.
_OWN = ("return_full_text", "seed", "stop", "stream")
DEFAULT_MAX_NEW_TOKENS = 50


def _cut_at_stop(text: str, stops: list[str]) -> str:
    """Text up to and including the earliest stop string (generation may run a token past it)."""
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if not hits:
        return text
    at, s = min(hits)
    return text[: at + len(s)]


class _GenerationBase(Pipeline):
    def _generation_options(self, params: dict[str, Any], prompt_tokens: int) -> dict[str, Any]:
        gen = {k: v for k, v in params.items() if k not in _OWN}
        stop = params.get("stop")
        if stop is not None:
            gen["stop_strings"] = [stop] if isinstance(stop, str) else list(stop)
        model_default = getattr(
            getattr(self.model, "generation_config", None), "max_new_tokens", None
        )
        if "max_new_tokens" not in gen and "max_length" not in gen:
            gen["max_new_tokens"] = model_default or DEFAULT_MAX_NEW_TOKENS
        room = self.model.config.n_positions - prompt_tokens
        if room < 1:
            raise ValueError(
                f"the prompt has {prompt_tokens} tokens and fills the model's "
                f"{self.model.config.n_positions} positions; shorten it"
            )
        if gen.get("max_new_tokens") and gen["max_new_tokens"] > room:
            logger.warning(
                "max_new_tokens %d cut to %d to fit the context", gen["max_new_tokens"], room
            )
            gen["max_new_tokens"] = room
        return gen


class TextGenerationPipeline(_GenerationBase):
    """Continue prompts with a language model.

    Call options: every `GenerationConfig` field (`max_new_tokens`, `do_sample`,
    `temperature`, `top_k`, `top_p`, `num_beams`, `repetition_penalty`,
    `num_return_sequences`, ...), plus `seed` (reproducible sampling), `stop` (a string or
    list of strings that ends the text, kept in it), `return_full_text` (default True: the
    prompt followed by the continuation) and `stream=True`, which returns an iterator of
    text pieces (whole characters, the continuation only) for a single prompt.

    Decoding defaults come from the checkpoint's `generation_config.json` when it has one
    (the embedded model samples with temperature 0.8, top-k 50), else greedy with at most
    50 new tokens. Results follow `transformers`: one prompt gives a list of
    `{"generated_text": ...}` (one per returned sequence), a list of prompts a list of those.

    Example:
        >>> from gpt2kit.pipelines import pipeline
        >>> generator = pipeline("text-generation")          # the embedded Shakespeare model
        >>> out = generator("ROMEO:", max_new_tokens=5, seed=0)
        >>> out[0]["generated_text"].startswith("ROMEO:")
        True
        >>> pieces = list(generator("JULIET:", max_new_tokens=5, seed=0, stream=True))
        >>> isinstance("".join(pieces), str)
        True
    """

    task = "text-generation"
    uses_default_model = True

    def __call__(self, inputs: Any, **options: Any) -> Any:
        if options.get("stream", self.defaults.get("stream", False)):
            if not isinstance(inputs, str):
                raise ValueError("stream=True streams one prompt; pass a single string")
            return self.stream(inputs, **{k: v for k, v in options.items() if k != "stream"})
        return super().__call__(inputs, **options)

    def stream(self, prompt: str, **options: Any) -> Iterator[str]:
        """Yield the continuation of `prompt` as text pieces while it is generated."""
        params = {k: v for k, v in self._params(options).items() if k != "stream"}
        ids = self._encode(prompt) or [self._bos()]
        gen = self._generation_options(params, len(ids))
        gen.pop("return_full_text", None)
        return stream_generate(self.model, self.tokenizer, ids, seed=params.get("seed"), **gen)

    def _bos(self) -> int:
        cfg = self.model.config
        bos = cfg.bos_token_id if cfg.bos_token_id is not None else cfg.eos_token_id
        if bos is None:
            raise ValueError("an empty prompt needs config.bos_token_id (or eos_token_id)")
        return int(bos)

    @torch.inference_mode()
    def _run_batch(self, prompts: list[str], params: dict[str, Any]) -> list[Any]:
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError("text-generation inputs must be strings")
        seqs = [self._encode(p) or [self._bos()] for p in prompts]
        ids, mask = self._pad(seqs, side="left")
        gen = self._generation_options(params, ids.shape[1])
        stops = gen.get("stop_strings") or []
        out = generate(
            self.model,
            ids,
            attention_mask=mask,
            tokenizer=self.tokenizer,
            seed=params.get("seed"),
            **gen,
        )
        per_prompt = out.shape[0] // len(prompts)
        eos = {self.model.config.eos_token_id, gen.get("eos_token_id")} - {None}
        results: list[Any] = []
        for i, prompt in enumerate(prompts):
            texts = []
            for row in out[i * per_prompt : (i + 1) * per_prompt, ids.shape[1] :].tolist():
                cut = next((j for j, t in enumerate(row) if t in eos), len(row))
                text = _cut_at_stop(self.tokenizer.decode(row[:cut]), stops)
                full = params.get("return_full_text", True)
                texts.append({"generated_text": prompt + text if full else text})
            results.append(texts)
        return results


class Text2TextGenerationPipeline(_GenerationBase):
    """Map a source text to a target text with a sequence-to-sequence model.

    Works with `GPT2ForSequenceToSequence` (decoder-only, `source <sep> target`) and
    `GPT2ForConditionalGeneration` (encoder-decoder); both return only the target. Call
    options are the `GenerationConfig` fields plus `seed`. Each input gives
    `{"generated_text": ...}` (`{"summary_text": ...}` for the `summarization` task).

    Example:
        >>> import tempfile
        >>> from gpt2kit import GPT2Config
        >>> from gpt2kit.models.seq2seq import GPT2ForSequenceToSequence
        >>> folder = tempfile.mkdtemp()
        >>> cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, eos_token_id=50256)
        >>> _ = GPT2ForSequenceToSequence(cfg).save_pretrained(folder)
        >>> out = Text2TextGenerationPipeline(folder)("hello", max_new_tokens=3)
        >>> list(out)
        ['generated_text']
    """

    task = "text2text"
    output_key = "generated_text"

    @torch.inference_mode()
    def _run_batch(self, sources: list[str], params: dict[str, Any]) -> list[Any]:
        seqs = [
            self._truncate(self._encode(s) or [self.tokenizer.eos_token_id], keep="end")
            for s in sources
        ]
        gen = self._generation_options(params, max(len(s) for s in seqs) + 1)
        if params.get("seed") is not None:
            gen["seed"] = params["seed"]
        gen.pop("stop_strings", None)
        targets = self.model.generate_target(seqs, **gen)
        per = len(targets) // len(sources)
        stops = (
            [params["stop"]]
            if isinstance(params.get("stop"), str)
            else list(params.get("stop") or [])
        )
        texts = [_cut_at_stop(self.tokenizer.decode(t), stops) for t in targets]
        if per == 1:
            return [{self.output_key: t} for t in texts]
        return [
            [{self.output_key: t} for t in texts[i * per : (i + 1) * per]]
            for i in range(len(sources))
        ]


class SummarizationPipeline(Text2TextGenerationPipeline):
    """`Text2TextGenerationPipeline` whose results are `{"summary_text": ...}`."""

    task = "summarization"
    output_key = "summary_text"
