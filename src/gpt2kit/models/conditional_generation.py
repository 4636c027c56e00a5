"""`GPT2ForConditionalGeneration`: a GPT-2 encoder, a GPT-2 decoder with cross-attention."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import GPT2Config
from ..tasks.seq2seq import (
    as_id_lists,
    check_target_generation_kwargs,
    pad_sequences,
    trim_generated,
)
from .backbone import GPT2Model, Linear
from .base import GPT2PreTrainedModel
from .losses import lm_head_outputs
from .outputs import Seq2SeqLMOutput


class GPT2ForConditionalGeneration(GPT2PreTrainedModel):
    """Encoder-decoder GPT-2: the encoder reads the source, the decoder attends to it.

    The decoder is exactly `transformers`' `GPT2LMHeadModel` with `add_cross_attention=True`:
    `transformer` (every block has `crossattention` and `ln_cross_attn`) and `lm_head`
    (tied to `transformer.wte`), same checkpoint keys, so the decoder part of a checkpoint
    loads in `transformers`. The config's `add_cross_attention` is switched on here.

    The encoder is a GPT-2 too, and causal (GPT-2 is trained left to right; a bidirectional
    mask would feed it inputs it never saw). With config `share_encoder_decoder` (default
    True) the encoder IS the decoder's backbone run without cross-attention, so a plain
    `gpt2` checkpoint initializes both and only the cross-attention is new. With
    `share_encoder_decoder=False` the encoder is a separate `GPT2Model` at `encoder.`
    (initialized from the decoder backbone when a checkpoint lacks it).

    `encoder_hidden_states [B, S, e]` may come from any other encoder instead (then the GPT-2
    encoder is skipped). If their width `e` differs from `n_embd`, set config
    `encoder_hidden_size=e`: an `encoder_proj` `Linear(e, n_embd)` maps them first.

    `forward` follows `GPT2LMHeadModel` for the DECODER (`input_ids`, `attention_mask`,
    `past_key_values`, `labels`, ...), plus the source: `encoder_input_ids [B, S]` with
    `encoder_attention_mask [B, S]` (also the cross-attention mask), or
    `encoder_hidden_states`. Batches come from `gpt2kit.tasks.seq2seq.EncoderDecoderCollator`.
    `generate(sources)` encodes once, then decodes from config `decoder_start_token_id`
    (default BOS) reusing the cached cross-attention keys/values at every step and beam.

    Example:
        >>> cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, bos_token_id=98, eos_token_id=99)
        >>> model = GPT2ForConditionalGeneration(cfg).eval()
        >>> src = torch.tensor([[5, 6, 7]])
        >>> model(torch.tensor([[98, 7, 6]]), encoder_input_ids=src).logits.shape
        torch.Size([1, 3, 100])
        >>> len(model.generate([5, 6, 7], max_new_tokens=4, eos_token_id=None))
        4
    """

    task = "text2text-generation"
    config_options = (
        "share_encoder_decoder",
        "encoder_hidden_size",
        "decoder_start_token_id",
    )  # extra config keys from_pretrained accepts

    def __init__(self, config: GPT2Config):
        config.add_cross_attention = True
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if not self.shared_encoder:
            self.encoder = GPT2Model(config.copy(add_cross_attention=False))
        width = config.get("encoder_hidden_size", None)
        if width is not None and int(width) != config.n_embd:
            self.encoder_proj = nn.Linear(int(width), config.n_embd)
        self.init_weights()

    @property
    def shared_encoder(self) -> bool:
        return bool(self.config.get("share_encoder_decoder", True))

    def encode(
        self, encoder_input_ids: torch.Tensor, encoder_attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Source ids `[B, S]` (mask: 1 = real, any padding side) -> states `[B, S, d]`."""
        encoder = self.transformer if self.shared_encoder else self.encoder
        # No encoder_hidden_states: the shared backbone's cross-attention blocks are skipped.
        return encoder(encoder_input_ids, attention_mask=encoder_attention_mask).last_hidden_state

    def project(self, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """Map states of another encoder to the decoder width (identity when they match)."""
        width = encoder_hidden_states.shape[-1]
        if width == self.config.n_embd:
            return encoder_hidden_states
        proj = getattr(self, "encoder_proj", None)
        if proj is None or proj.in_features != width:
            raise ValueError(
                f"encoder_hidden_states have width {width} but the decoder has {self.config.n_embd}; "
                f"build the model with config encoder_hidden_size={width} to add encoder_proj"
            )
        return proj(encoder_hidden_states)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        encoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        logits_to_keep: int = 0,
        return_logits: bool | None = None,
    ) -> Seq2SeqLMOutput:
        if encoder_hidden_states is None:
            if encoder_input_ids is None:
                raise ValueError(
                    "pass the source: encoder_input_ids [B, S] (run through the encoder) or "
                    "encoder_hidden_states [B, S, d] from any encoder"
                )
            encoder_hidden_states = self.encode(encoder_input_ids, encoder_attention_mask)
        elif encoder_input_ids is not None:
            raise ValueError("pass encoder_input_ids or encoder_hidden_states, not both")
        else:
            encoder_hidden_states = self.project(encoder_hidden_states)
        out = self.transformer(
            input_ids,
            past_key_values=past_key_values,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits, loss = lm_head_outputs(self.lm_head, hidden, labels, return_logits)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            decoder_hidden_states=out.hidden_states,
            decoder_attentions=out.attentions,
            cross_attentions=out.cross_attentions,
            encoder_last_hidden_state=encoder_hidden_states,
        )

    @torch.no_grad()
    def generate(
        self,
        sources: Any = None,
        attention_mask: torch.Tensor | None = None,
        *,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        **gen_kwargs: Any,
    ) -> list[list[int]] | list[int]:
        """Target ids for each source (start token stripped, cut at EOS).

        Args:
            sources: one id list, a list of id lists, or `[B, S]` ids (+ `attention_mask`);
                or leave it out and pass `encoder_hidden_states` (+ `encoder_attention_mask`).
            **gen_kwargs: passed to `gpt2kit.generation.generate` (`max_new_tokens`,
                `do_sample`, `num_beams`, ...).

        Returns:
            A list of target id lists (one per source, or per returned sequence), or one id
            list when a single source was given.
        """
        from ..generation import generate

        check_target_generation_kwargs(gen_kwargs)
        single = False
        if encoder_hidden_states is None:
            if sources is None:
                raise ValueError("pass sources (token ids) or encoder_hidden_states")
            seqs, single = as_id_lists(sources, attention_mask)
            ids, encoder_attention_mask = pad_sequences(seqs, 0)
            ids, encoder_attention_mask = (
                ids.to(self.device),
                encoder_attention_mask.to(self.device),
            )
            states = self.encode(ids, encoder_attention_mask)  # once, for every step and beam
        else:
            states = self.project(encoder_hidden_states.to(self.device))
        start = self.config.get("decoder_start_token_id", None)
        if start is None:
            start = (
                self.config.bos_token_id
                if self.config.bos_token_id is not None
                else self.config.eos_token_id
            )
        if start is None:
            raise ValueError(
                "set config.decoder_start_token_id (or bos_token_id) to start decoding"
            )
        prompt = torch.full((states.shape[0], 1), int(start), dtype=torch.long, device=self.device)
        gen_kwargs.setdefault("eos_token_id", self.config.eos_token_id)
        out = generate(
            self,
            prompt,
            encoder_hidden_states=states,
            encoder_attention_mask=encoder_attention_mask,
            **gen_kwargs,
        )
        targets = trim_generated(out[:, 1:], gen_kwargs["eos_token_id"])
        return targets[0] if single and len(targets) == 1 else targets

    def complete_loading(self, report: Any) -> None:
        """A separate encoder missing from the checkpoint (a plain `gpt2` folder) starts as a
        copy of the decoder's backbone (not a random init)."""
        new_encoder = [k for k in report.new_keys if k.startswith("encoder.")]
        if new_encoder and len(new_encoder) == len(self.encoder.state_dict()):
            state = {
                k: v
                for k, v in self.transformer.state_dict().items()
                if ".crossattention." not in k and ".ln_cross_attn." not in k
            }
            self.encoder.load_state_dict(state)
            report.new_keys = [k for k in report.new_keys if not k.startswith("encoder.")]
