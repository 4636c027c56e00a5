"""`GPT2ForSequenceToSequence`: decoder-only seq2seq, `source <sep> target <eos>` in one sequence."""

from __future__ import annotations

from typing import Any

import torch

from .. import generation  # (its `generate` loads on first call: PEP 562)
from ..nn.base import UnsupportedArgumentError
from ..tasks.seq2seq import (
    as_id_lists,
    check_target_generation_kwargs,
    pad_sequences,
    trim_generated,
)
from .lm import GPT2LMHeadModel


class GPT2ForSequenceToSequence(GPT2LMHeadModel):
    """A GPT-2 LM trained to map a source to a target: `source <sep> target <eos>`.

    Same weights and checkpoint keys as `GPT2LMHeadModel` (a plain `gpt2` checkpoint loads
    with nothing new). Training batches come from `gpt2kit.tasks.seq2seq.Seq2SeqCollator`:
    labels are `-100` on the source and the separator, so the loss covers `target <eos>`
    only. The separator is config `sep_token_id` (default: the EOS id; GPT-2 has no SEP).

    `generate(input_ids, ...)` is a causal LM's (`GPT2LMHeadModel.generate`: tensors in,
    prompt + continuation out, as `transformers`). `generate_target(sources)` is the
    seq2seq convenience: id lists (or a padded tensor) in, it prompts with `source <sep>`
    and returns only each target's ids, cut at EOS; greedy, sampling and beam search come
    from `gpt2kit.generation.generate` (every keyword argument is passed on).

    Example:
        >>> from gpt2kit.config import GPT2Config
        >>> from gpt2kit.tasks.seq2seq import Seq2SeqCollator
        >>> cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, eos_token_id=99)
        >>> model = GPT2ForSequenceToSequence(cfg)
        >>> batch = Seq2SeqCollator(sep_token_id=99, eos_token_id=99)([([1, 2, 3], [3, 2, 1])])
        >>> model(**batch).loss.dim()
        0
        >>> len(model.eval().generate_target([1, 2, 3], max_new_tokens=2, eos_token_id=None))
        2
    """

    task = "text2text-generation"
    config_options = ("sep_token_id",)  # extra config keys from_pretrained accepts

    @property
    def eos_token_id(self) -> int:
        eos = self.config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        if eos is None:
            raise ValueError(
                "config.eos_token_id is not set; seq2seq needs an EOS id to end targets"
            )
        return int(eos)

    @property
    def sep_token_id(self) -> int:
        return int(self.config.get("sep_token_id", self.eos_token_id))

    def generate(self, input_ids: Any = None, **kwargs: Any) -> Any:
        """A causal LM's `generate` (see `GPT2LMHeadModel.generate`): `input_ids [B, T]`
        tensors already holding `source <sep>`; returns prompt + new ids. Python id lists
        are refused rather than read as one prompt: `generate_target` takes those."""
        if isinstance(input_ids, (list, tuple)) or "sources" in kwargs:
            raise UnsupportedArgumentError(
                "GPT2ForSequenceToSequence.generate is a causal LM's (input_ids tensors in, "
                "prompt + continuation out); for source id lists in and target ids out use "
                "generate_target(sources, ...)"
            )
        return super().generate(input_ids, **kwargs)

    @torch.no_grad()
    def generate_target(
        self, sources: Any, attention_mask: torch.Tensor | None = None, **gen_kwargs: Any
    ) -> list[list[int]] | list[int]:
        """Target ids for each source (prompt stripped, cut at EOS).

        Args:
            sources: one id list, a list of id lists, or `input_ids [B, S]` (with
                `attention_mask` when padded). Without the separator: it is added here.
            **gen_kwargs: passed to `gpt2kit.generation.generate` (`max_new_tokens`,
                `do_sample`, `num_beams`, ...).

        Returns:
            A list of target id lists (one per source, or per returned sequence), or one id
            list when a single source was given.
        """
        check_target_generation_kwargs(gen_kwargs)
        seqs, single = as_id_lists(sources, attention_mask)
        pad = (
            self.config.pad_token_id if self.config.pad_token_id is not None else self.eos_token_id
        )
        # Left padding puts every separator in the last column, where generation continues.
        ids, mask = pad_sequences([[*s, self.sep_token_id] for s in seqs], pad, side="left")
        gen_kwargs.setdefault("eos_token_id", self.eos_token_id)
        gen_kwargs.setdefault("pad_token_id", pad)
        out = generation.generate(
            self, ids.to(self.device), attention_mask=mask.to(self.device), **gen_kwargs
        )
        targets = trim_generated(out[:, ids.shape[1] :], gen_kwargs["eos_token_id"])
        return targets[0] if single and len(targets) == 1 else targets
