"""`GPT2ForConditionalGeneration`: `transformers`' `EncoderDecoderModel` of a GPT-2 encoder and
a GPT-2 decoder with cross-attention, with the same arguments, weights, files and numbers.

Why the layout is `transformers`' and not our own: users arrive with encoder-decoder code
(`DataCollatorForSeq2Seq`, `Seq2SeqTrainer`, `model(input_ids=source, labels=target)`,
`model.generate(source)`). Any other convention trains silently wrong on their batches
(the decoder fed the source, labels shifted twice). See docs/migrating-encdec.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import generation  # (its `generate` loads on first call: PEP 562)
from ..checkpoint import CheckpointError, atomic_folder, to_hf_state_dict, write_weights
from ..config import GPT2Config
from ..nn.backbone import GPT2Model
from ..nn.base import GPT2PreTrainedModel, UnsupportedArgumentError
from ..nn.outputs import Seq2SeqLMOutput
from ..tasks.seq2seq import (
    as_id_lists,
    check_target_generation_kwargs,
    pad_sequences,
    shift_tokens_right,
    trim_generated,
)
from .generation_mixin import GenerationMixin
from .lm import GPT2LMHeadModel
from .losses import keep_positions, linear_cross_entropy, wants_logits

logger = logging.getLogger("gpt2kit")

# Config keys of the encoder-decoder as a whole (top level of `EncoderDecoderModel`'s
# config.json), never written into the decoder's or the encoder's sub-config.
TOP_LEVEL_KEYS = (
    "decoder_start_token_id",
    "share_encoder_decoder",
    "encoder_hidden_size",
    "encoder",
    "decoder",
    "tie_encoder_decoder",
    "is_encoder_decoder",
)
_SUB_CONFIG_DROP = (*TOP_LEVEL_KEYS, "gpt2kit_version", "architectures", "is_decoder")

# Our former forward arguments, and what replaced them (a call with them fails, naming it).
_RENAMED = {
    "encoder_input_ids": "input_ids (the source; the decoder's ids are decoder_input_ids)",
    "encoder_attention_mask": "attention_mask (the source's mask; the decoder's is "
    "decoder_attention_mask)",
    "encoder_hidden_states": "encoder_outputs=(hidden_states,) (a tuple or BaseModelOutput, "
    "as in transformers)",
    "sources": "input_ids (a [B, S] tensor), or generate_target(sources) for id lists",
}


def _renamed_error(name: str, where: str) -> TypeError:
    return UnsupportedArgumentError(
        f"{where} got {name!r}, which GPT2ForConditionalGeneration no longer takes: pass "
        f"{_RENAMED[name]}. The arguments follow transformers' EncoderDecoderModel "
        "(see docs/migrating-encdec.md)"
    )


class GPT2ForConditionalGeneration(GenerationMixin, GPT2PreTrainedModel):
    """GPT-2 encoder + GPT-2 decoder with cross-attention, as `transformers`'
    `EncoderDecoderModel.from_encoder_decoder_pretrained("gpt2", "gpt2")` builds it.

    Modules and checkpoint keys are `transformers`': `encoder` (a `GPT2Model`, causal as
    GPT-2 always is), `decoder` (a `GPT2LMHeadModel` whose blocks have `crossattention` and
    `ln_cross_attn`; `lm_head` tied to `decoder.transformer.wte`), and `enc_to_dec_proj`
    when the encoder's width differs from the decoder's. `save_pretrained` writes an
    `EncoderDecoderModel` folder (nested `encoder`/`decoder` configs) that `transformers`
    loads; `from_pretrained` reads those, plain GPT-2 folders (encoder and decoder both
    start from the GPT-2 weights, only the cross-attention is new) and gpt2kit's folders
    of before the switch (`transformer.*` keys).

    `forward` takes `EncoderDecoderModel`'s arguments: `input_ids`/`attention_mask` are the
    SOURCE; the decoder reads `decoder_input_ids`/`decoder_attention_mask`; or pass
    `encoder_outputs` (a tuple or `BaseModelOutput` whose first item is `[B, S, e]` states
    from any encoder). `labels [B, T]` are the target, NOT shifted: the loss is
    `cross_entropy(logits, labels)` position by position (mean over labels != -100), and
    without `decoder_input_ids` the decoder reads `labels` shifted right behind
    `config.decoder_start_token_id` (`-100` replaced by `config.pad_token_id`; both must be
    set, as in `transformers`). `generate(input_ids=source)` returns `[B, 1 + new]` ids that
    start with the start token; `generate_target(sources)` takes id lists and returns the
    target ids only.

    Config: the decoder's GPT-2 fields at the top, plus `decoder_start_token_id`,
    `pad_token_id`, `encoder` (the encoder's fields when they differ, as read from an
    `EncoderDecoderModel` folder), `share_encoder_decoder` (default False: the encoder's
    weights are the decoder backbone's, tied, one copy trained; written as two equal copies
    so `transformers` loads it) and `encoder_hidden_size` (width of an external encoder's
    states: adds `enc_to_dec_proj`).

    Example:
        >>> cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, bos_token_id=98,
        ...                  eos_token_id=99, pad_token_id=0, decoder_start_token_id=98)
        >>> model = GPT2ForConditionalGeneration(cfg).eval()
        >>> src, tgt = torch.tensor([[5, 6, 7]]), torch.tensor([[7, 6, 99]])
        >>> out = model(input_ids=src, labels=tgt)
        >>> out.logits.shape, out.loss.dim()
        (torch.Size([1, 3, 100]), 0)
        >>> ids = model.generate(input_ids=src, max_new_tokens=4, eos_token_id=None)
        >>> ids.shape, int(ids[0, 0])
        (torch.Size([1, 5]), 98)
    """

    task = "text2text-generation"
    base_model_prefix = "decoder.transformer"  # the checkpoint prefix of the decoder backbone
    hf_architecture = "EncoderDecoderModel"
    main_input_name = "input_ids"
    config_options = TOP_LEVEL_KEYS  # extra config keys from_pretrained accepts

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.decoder = GPT2LMHeadModel(self.decoder_config)
        self.encoder = GPT2Model(self.encoder_config)
        width = config.get("encoder_hidden_size", None)
        if width is not None and int(width) != config.n_embd:
            self.enc_to_dec_proj = nn.Linear(int(width), config.n_embd)
        self.init_weights()

    # -- configs and modules -------------------------------------------------------------------
    @property
    def decoder_config(self) -> GPT2Config:
        """The decoder's GPT-2 config: the top-level fields, cross-attention on."""
        data = {k: v for k, v in self.config.to_dict().items() if k not in _SUB_CONFIG_DROP}
        return GPT2Config(**{**data, "add_cross_attention": True})

    @property
    def encoder_config(self) -> GPT2Config:
        """The encoder's GPT-2 config: config `encoder` when set, else the decoder's fields."""
        sub = self.config.get("encoder", None)
        if sub is None:
            sub = self.config.to_dict()
        data = {k: v for k, v in dict(sub).items() if k not in _SUB_CONFIG_DROP}
        return GPT2Config(**{**data, "add_cross_attention": False})

    @property
    def shared_encoder(self) -> bool:
        return bool(self.config.get("share_encoder_decoder", False))

    @property
    def backbone(self) -> nn.Module:
        return self.decoder.transformer

    def get_encoder(self) -> GPT2Model:
        return self.encoder

    def get_decoder(self) -> GPT2LMHeadModel:
        return self.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        """The encoder's token embedding (as `EncoderDecoderModel`)."""
        return self.encoder.wte

    def get_output_embeddings(self) -> nn.Linear:
        return self.decoder.lm_head

    def set_output_embeddings(self, head: nn.Linear) -> None:
        self.decoder.lm_head = head

    def set_input_embeddings(self, embedding: nn.Embedding) -> None:
        self.encoder.wte = embedding

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> nn.Embedding:
        """Not on the pair, as in `transformers`: resize `model.encoder` and `model.decoder`."""
        raise NotImplementedError(
            "resizing the embeddings of GPT2ForConditionalGeneration directly is not supported "
            "(as in transformers' EncoderDecoderModel); call model.encoder.resize_token_embeddings"
            "(...) and model.decoder.resize_token_embeddings(...) and set config.vocab_size"
        )

    def tie_weights(self) -> None:
        """The decoder's `lm_head` to its embedding; with `share_encoder_decoder`, every
        encoder parameter to the decoder backbone's parameter of the same name."""
        self.decoder.tie_weights()
        if not self.shared_encoder:
            return
        source = self.decoder.transformer
        for name, module in self.encoder.named_modules():
            twin = source.get_submodule(name)
            for pname, param in list(module._parameters.items()):
                if param is not None:
                    module._parameters[pname] = twin._parameters[pname]

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None
    ) -> None:
        """Both stacks recompute their blocks' activations in the backward pass."""
        super().gradient_checkpointing_enable(gradient_checkpointing_kwargs)
        self.encoder.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.decoder.transformer.gradient_checkpointing = False
        self.encoder.gradient_checkpointing = False

    # -- the encoder ---------------------------------------------------------------------------
    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Source ids `[B, S]` (mask: 1 = real, any padding side) -> the encoder's output."""
        return self.encoder(input_ids, attention_mask=attention_mask, **kwargs)

    def project(self, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """States of any encoder -> the decoder's width (`enc_to_dec_proj` when they differ)."""
        width = encoder_hidden_states.shape[-1]
        if width == self.config.n_embd:
            return encoder_hidden_states
        proj = getattr(self, "enc_to_dec_proj", None)
        if proj is None or proj.in_features != width:
            raise ValueError(
                f"encoder states have width {width} but the decoder has {self.config.n_embd}; "
                f"build the model with config encoder_hidden_size={width} to add enc_to_dec_proj"
            )
        return proj(encoder_hidden_states)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """`labels` shifted right behind the start token (`DataCollatorForSeq2Seq` calls it)."""
        return shift_tokens_right(
            labels, self.config.pad_token_id, self.config.get("decoder_start_token_id", None)
        )

    # -- forward -------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        *,
        cache: Any = None,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        decoder_position_ids: torch.Tensor | None = None,
        decoder_token_type_ids: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        return_logits: bool | None = None,
        skip_logits: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Seq2SeqLMOutput | tuple:
        """`EncoderDecoderModel.forward`'s arguments (see the class docstring).

        `position_ids`/`token_type_ids` go to the encoder, `decoder_position_ids`/
        `decoder_token_type_ids` to the decoder (`transformers` routes its `decoder_`
        keywords the same way). `past_key_values` (or 5.x's `cache`) is the decoder's cache.
        `num_items_in_batch` is accepted and, as in `EncoderDecoderModel`, not used: the loss
        is the mean over the scored tokens. `return_logits=False` (or `skip_logits=True`):
        the same loss chunk by chunk, `logits=None`.
        """
        for name in kwargs:
            if name in _RENAMED:
                raise _renamed_error(name, "forward")
            raise UnsupportedArgumentError(
                f"GPT2ForConditionalGeneration.forward got an unexpected keyword argument {name!r}"
            )
        del num_items_in_batch  # (EncoderDecoderModel's loss is a plain mean too)
        flags = dict(
            output_attentions=bool(output_attentions),
            output_hidden_states=bool(output_hidden_states),
        )
        if encoder_outputs is None:
            if input_ids is None and inputs_embeds is None:
                raise ValueError(
                    "pass the source: input_ids [B, S] (with attention_mask), inputs_embeds, or "
                    "encoder_outputs=(hidden_states,) from an encoder"
                )
            encoder_outputs = self.encoder(
                input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                token_type_ids=token_type_ids,
                inputs_embeds=inputs_embeds,
                **flags,
            )
            states = encoder_outputs.last_hidden_state
        else:
            states = _first_state(encoder_outputs)
        enc_hidden = _field(encoder_outputs, "hidden_states")
        enc_attn = _field(encoder_outputs, "attentions")
        projected = self.project(states)

        derived = False
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
            derived = True
            if decoder_attention_mask is None:
                # As transformers: every position holding the pad id is masked out.
                decoder_attention_mask = (decoder_input_ids != self.config.pad_token_id).long()
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError(
                "pass the decoder's input: decoder_input_ids [B, T] (for training, labels alone "
                "suffice: the decoder then reads them shifted right behind "
                "config.decoder_start_token_id)"
            )
        if derived and decoder_position_ids is None and past_key_values is None and cache is None:
            # Shifted labels start at column 0 with the start token: positions 0..T-1, as
            # transformers counts them, even where a real token equals the pad id.
            T = decoder_input_ids.shape[1]
            decoder_position_ids = torch.arange(T, device=decoder_input_ids.device).expand(
                decoder_input_ids.shape[0], T
            )
        out = self.decoder.transformer(
            decoder_input_ids,
            past_key_values=past_key_values,
            cache=cache,
            attention_mask=decoder_attention_mask,
            token_type_ids=decoder_token_type_ids,
            position_ids=decoder_position_ids,
            inputs_embeds=decoder_inputs_embeds,
            encoder_hidden_states=projected,
            encoder_attention_mask=attention_mask,
            use_cache=use_cache,
            **flags,
        )
        hidden = keep_positions(out.last_hidden_state, logits_to_keep)
        head = self.decoder.lm_head
        logits = loss = None
        if wants_logits(return_logits, skip_logits):
            logits = head(hidden)
            if labels is not None:
                loss = F.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]),
                    labels.to(logits.device).reshape(-1),
                    ignore_index=-100,
                )
        else:
            if labels is None:
                raise ValueError(
                    "return_logits=False needs labels (there is nothing else to return)"
                )
            if head.bias is not None:
                raise ValueError(
                    "the chunked loss supports a bias-free lm_head only; pass return_logits=True"
                )
            loss = linear_cross_entropy(
                hidden.reshape(-1, hidden.shape[-1]), head.weight, labels.reshape(-1)
            )
        result = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            decoder_hidden_states=out.hidden_states,
            decoder_attentions=out.attentions,
            cross_attentions=out.cross_attentions,
            encoder_last_hidden_state=states,
            encoder_hidden_states=enc_hidden,
            encoder_attentions=enc_attn,
        )
        return result.to_tuple() if return_dict is False else result

    # -- generation ----------------------------------------------------------------------------
    def _start_token(self, gen_kwargs: dict[str, Any], generation_config: Any) -> int:
        """`decoder_start_token_id` (call, generation config, model config), else BOS, as
        `transformers`' `generate` falls back."""
        for value in (
            gen_kwargs.get("decoder_start_token_id"),
            getattr(generation_config, "decoder_start_token_id", None),
        ):
            if value is not None:
                return int(value)
        value = self.config.get("decoder_start_token_id", None)
        if value is None:
            value = gen_kwargs.get("bos_token_id")
            if value is None:
                value = getattr(generation_config, "bos_token_id", None)
            if value is None:
                value = self.config.bos_token_id
        if value is None:
            raise ValueError(
                "set config.decoder_start_token_id (or pass decoder_start_token_id=, or set "
                "bos_token_id) to start decoding"
            )
        return int(value)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        generation_config: Any = None,
        *,
        encoder_outputs: Any = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_start_token_id: int | None = None,
        **gen_kwargs: Any,
    ) -> Any:
        """Encode the source once, then decode from the start token (`EncoderDecoderModel.generate`).

        Args:
            input_ids: the source `[B, S]` (+ `attention_mask`), or `encoder_outputs`.
            decoder_input_ids: decoder prompts `[B, T]` (default: the start token alone).
            decoder_start_token_id: else the generation config's, the model config's, BOS.
            **gen_kwargs: `gpt2kit.generation.generate`'s options (`max_new_tokens`,
                `num_beams`, `do_sample`, `return_dict_in_generate`, ...); `labels` (what
                `Seq2SeqTrainer` passes) is not read, as in `transformers`.

        Returns:
            `[B * num_return_sequences, T + new]` decoder ids starting with the start token
            (finished rows padded with `pad_token_id`), or a `GenerateOutput`.
        """
        for name in list(gen_kwargs):
            if name in _RENAMED:
                raise _renamed_error(name, "generate")
        # `Seq2SeqTrainer(predict_with_generate=True)` passes the batch's labels; transformers'
        # generate does not read them (the encoder takes none), neither do we.
        gen_kwargs.pop("labels", None)
        if gen_kwargs.pop("synced_gpus", None):
            raise UnsupportedArgumentError(
                "synced_gpus=True (DeepSpeed ZeRO-3 / FSDP generation in lockstep) is not "
                "supported; generate on each rank alone (synced_gpus=False)"
            )
        if input_ids is not None and not isinstance(input_ids, torch.Tensor):
            raise UnsupportedArgumentError(
                "generate takes input_ids as a [B, S] tensor and returns decoder ids starting "
                "with the start token, as transformers does; for id lists in and target ids "
                "out use generate_target(sources)"
            )
        if input_ids is not None and input_ids.dim() == 1:
            input_ids = input_ids[None]
        if decoder_start_token_id is not None:
            gen_kwargs["decoder_start_token_id"] = decoder_start_token_id
        if generation_config is None:
            generation_config = self.generation_config
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("pass the source as input_ids [B, S], or encoder_outputs")
            input_ids = input_ids.to(self.device)
            if attention_mask is not None:
                attention_mask = attention_mask.to(self.device)
            states = self.encoder(input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            states = _first_state(encoder_outputs).to(self.device)
        states = self.project(states)  # once, for every step and beam
        start = self._start_token(gen_kwargs, generation_config)
        gen_kwargs.pop("decoder_start_token_id", None)
        if decoder_input_ids is None:
            decoder_input_ids = torch.full(
                (states.shape[0], 1), start, dtype=torch.long, device=self.device
            )
        return generation.generate(
            self.decoder,
            decoder_input_ids.to(self.device),
            generation_config=generation_config,
            encoder_hidden_states=states,
            encoder_attention_mask=attention_mask,
            **gen_kwargs,
        )

    @torch.no_grad()
    def generate_target(
        self,
        sources: Any = None,
        attention_mask: torch.Tensor | None = None,
        *,
        encoder_outputs: Any = None,
        **gen_kwargs: Any,
    ) -> list[list[int]] | list[int]:
        """Target ids for each source: start token stripped, cut at EOS.

        Args:
            sources: one id list, a list of id lists, or `[B, S]` ids (+ `attention_mask`);
                or leave it out and pass `encoder_outputs`.
            **gen_kwargs: `generate`'s options (`max_new_tokens`, `num_beams`, ...).

        Returns:
            One list of target ids per source (or per returned sequence), or one id list
            when a single source was given.
        """
        check_target_generation_kwargs(gen_kwargs)
        single = False
        mask = None
        if encoder_outputs is None:
            if sources is None:
                raise ValueError("pass sources (token ids) or encoder_outputs")
            seqs, single = as_id_lists(sources, attention_mask)
            ids, mask = pad_sequences(seqs, 0)
            sources = ids
        eos = gen_kwargs.setdefault("eos_token_id", self.generation_config.eos_token_id)
        out = self.generate(sources, mask, encoder_outputs=encoder_outputs, **gen_kwargs)
        targets = trim_generated(out[:, 1:], eos)
        return targets[0] if single and len(targets) == 1 else targets

    # -- checkpoints ---------------------------------------------------------------------------
    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_pretrained_model_name_or_path: Any,
        decoder_pretrained_model_name_or_path: Any,
        **kwargs: Any,
    ) -> GPT2ForConditionalGeneration:
        """The pair from two GPT-2 checkpoints, as `EncoderDecoderModel.from_encoder_decoder_pretrained`:
        the encoder from the first (a `GPT2Model`), the decoder from the second with new
        cross-attention (and `enc_to_dec_proj` when the widths differ). Keywords as there:
        `encoder_<name>` / `decoder_<name>` go to that side's `from_pretrained`, the others
        (e.g. `pad_token_id`, and `decoder_start_token_id`, which `transformers` would hand
        to the decoder as `start_token_id`) to the pair's config."""
        pair = {k: kwargs.pop(k) for k in TOP_LEVEL_KEYS if k in kwargs}
        enc_kw = {
            k[len("encoder_") :]: kwargs.pop(k) for k in list(kwargs) if k.startswith("encoder_")
        }
        dec_kw = {
            k[len("decoder_") :]: kwargs.pop(k) for k in list(kwargs) if k.startswith("decoder_")
        }
        encoder = GPT2Model.from_pretrained(encoder_pretrained_model_name_or_path, **enc_kw)
        decoder = GPT2LMHeadModel.from_pretrained(
            decoder_pretrained_model_name_or_path, add_cross_attention=True, **dec_kw
        )
        flat = {k: v for k, v in decoder.config.to_dict().items() if k not in _SUB_CONFIG_DROP}
        flat["add_cross_attention"] = False  # (the pair's flat config; the decoder has it on)
        enc = {k: v for k, v in encoder.config.to_dict().items() if k not in _SUB_CONFIG_DROP}
        enc["add_cross_attention"] = False
        if enc != flat:
            flat["encoder"] = enc
        if encoder.config.n_embd != decoder.config.n_embd:
            flat["encoder_hidden_size"] = encoder.config.n_embd
        flat.update(kwargs)
        flat.update(pair)
        with torch.device("meta"):
            model = cls(GPT2Config(**flat))
        model.to_empty(device=decoder.device)
        model.to(decoder.dtype)
        model._init_module_tree(getattr(model, "enc_to_dec_proj", None))
        model.decoder.load_state_dict(decoder.state_dict())
        model.encoder.load_state_dict(encoder.state_dict())
        model.tie_weights()
        return model.eval()

    def _init_module_tree(self, module: nn.Module | None) -> None:
        if module is not None:
            module.apply(self._init_module)

    @classmethod
    def rename_checkpoint_keys(
        cls, state: dict[str, torch.Tensor], config: GPT2Config
    ) -> dict[str, torch.Tensor]:
        """File keys -> `EncoderDecoderModel`'s (called by `gpt2kit.checkpoint.load_model`).

        `encoder.*`/`decoder.*`/`enc_to_dec_proj.*` are kept; a plain GPT-2 folder's
        (`transformer.*`, bare `h.*`) and gpt2kit's former layout (`transformer.*` with
        cross-attention, `encoder_proj.*`) become the decoder's; an encoder the file lacks
        is the decoder backbone's weights (a copy, or the same tensors when shared).
        """
        out: dict[str, torch.Tensor] = {}
        for key, tensor in state.items():
            if key.startswith(("encoder.", "decoder.", "enc_to_dec_proj.")):
                pass
            elif key.startswith(("transformer.", "lm_head.")):
                key = "decoder." + key
            elif key.startswith("encoder_proj."):
                key = "enc_to_dec_proj." + key[len("encoder_proj.") :]
            elif key.split(".", 1)[0] in ("wte", "wpe", "h", "ln_f"):
                key = "decoder.transformer." + key
            out[key] = tensor
        backbone = {
            k[len("decoder.transformer.") :]: v
            for k, v in out.items()
            if k.startswith("decoder.transformer.")
            and ".crossattention." not in k
            and ".ln_cross_attn." not in k
        }
        encoder = {k[len("encoder.") :]: v for k, v in out.items() if k.startswith("encoder.")}
        if bool(config.get("share_encoder_decoder", False)) and encoder:
            differ = [
                k for k, v in encoder.items() if k in backbone and not torch.equal(v, backbone[k])
            ]
            if differ:
                raise _checkpoint_error(
                    f"share_encoder_decoder=True, but the checkpoint's encoder differs from its "
                    f"decoder backbone ({', '.join(differ[:4])}); load with "
                    "share_encoder_decoder=False to keep both"
                )
        if not encoder:
            out.update({"encoder." + k: v for k, v in backbone.items()})
        return out

    def save_pretrained(
        self,
        directory: Any,
        *,
        max_shard_size: int | str = "5GB",
        tokenizer: Any = None,
        dtype: torch.dtype | None = None,
    ) -> Path:
        """Write an `EncoderDecoderModel` folder `transformers` loads: `encoder.*`,
        `decoder.transformer.*` (Conv1D layout, tied `lm_head` not written), nested config."""
        state = to_hf_state_dict(self)
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        # (own storage for each tensor: a shared encoder's weights are the decoder's)
        state = {k: v.detach().cpu().clone() for k, v in state.items()}
        target = Path(directory)
        with atomic_folder(target) as tmp:
            write_weights(state, tmp, max_shard_size)
            (tmp / "config.json").write_text(
                json.dumps(self.encoder_decoder_config_dict(), indent=2, sort_keys=True) + "\n",
                encoding="utf-8",
            )
            self.save_extra_files(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
        return target

    def encoder_decoder_config_dict(self) -> dict[str, Any]:
        """`config.json` as `EncoderDecoderConfig` writes it (nested GPT-2 sub-configs)."""
        flat = self.config.to_dict()

        def sub(cfg: GPT2Config, architecture: str, decoder: bool) -> dict[str, Any]:
            data = {k: v for k, v in cfg.to_dict().items() if k not in _SUB_CONFIG_DROP}
            data.update(architectures=[architecture], add_cross_attention=decoder)
            if decoder:
                data["is_decoder"] = True
            return data

        out = {
            "architectures": ["EncoderDecoderModel"],
            "model_type": "encoder-decoder",
            "is_encoder_decoder": True,
            "encoder": sub(self.encoder_config, "GPT2Model", False),
            "decoder": sub(self.decoder_config, "GPT2LMHeadModel", True),
            "decoder_start_token_id": flat.get("decoder_start_token_id"),
            "pad_token_id": flat.get("pad_token_id"),
            # (transformers 5 ignores it; 4.x ties the two equal copies it reads)
            "tie_encoder_decoder": self.shared_encoder,
            "gpt2kit_version": flat.get("gpt2kit_version"),
        }
        for key in ("share_encoder_decoder", "encoder_hidden_size"):
            if key in self.config.extra:
                out[key] = self.config.extra[key]
        return out


def _first_state(encoder_outputs: Any) -> torch.Tensor:
    """The states in `encoder_outputs`: a `BaseModelOutput`-like object or a tuple/list whose
    first item is `[B, S, e]` (a bare tensor is refused: `transformers` would read its
    first row as the batch)."""
    if isinstance(encoder_outputs, torch.Tensor):
        raise ValueError(
            "encoder_outputs must be a tuple (hidden_states, ...) or a BaseModelOutput, as in "
            "transformers; got a bare tensor: pass encoder_outputs=(hidden_states,)"
        )
    states = getattr(encoder_outputs, "last_hidden_state", None)
    if states is None and isinstance(encoder_outputs, (tuple, list)) and encoder_outputs:
        states = encoder_outputs[0]
    if not isinstance(states, torch.Tensor) or states.dim() != 3:
        raise ValueError(
            "encoder_outputs must hold [batch, source tokens, width] states first; got "
            f"{type(encoder_outputs).__name__}"
        )
    return states


def _field(outputs: Any, name: str) -> Any:
    value = getattr(outputs, name, None)
    if value is None and isinstance(outputs, (tuple, list)):
        index = {"hidden_states": 1, "attentions": 2}[name]
        value = outputs[index] if len(outputs) > index else None
    return value


def _checkpoint_error(message: str) -> Exception:
    return CheckpointError(message)


EncoderDecoderModel = GPT2ForConditionalGeneration
"""`transformers`' name: here the GPT-2 + GPT-2 pair (`from_pretrained`,
`from_encoder_decoder_pretrained`); other encoders and decoders are not supported."""
