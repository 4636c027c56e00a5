"""`GPT2PreTrainedModel`: what every gpt2kit model shares (config, init, save/load entry points).

File formats are not handled here: `from_pretrained`/`save_pretrained` hand the module to
`gpt2kit.checkpoint`, which owns key names, the Conv1D transpose, tied weights and shards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..adapters import save_adapter
from ..adapters.convert import base_of_adapter_folder
from ..adapters.mixin import AdapterMixin
from ..checkpoint import load_model, save_model
from ..config import ALIASES, GPT2Config
from ..errors import UnsupportedArgumentError
from ..hub import HubOptions, push_folder
from ..quantization import QuantizedEmbedding, QuantizedLinear, is_quantized
from ..quantization import files as quantized_files
from ..quantization import resolve as resolve_quantization
from ..quantization.files import save_quantized

M = TypeVar("M", bound="GPT2PreTrainedModel")


class ConfigOption:
    """A task option kept in the config (so it survives save/load), read as an attribute.

    `default` is a value or a function of the model; `choices` are checked when the model
    is built. Declaring one adds its key to the class's `config_options`, the extra config
    keys `from_pretrained` accepts.
    """

    def __init__(self, key: str, default: Any, kind: type = str, choices: tuple = ()) -> None:
        self.key, self.default, self.kind, self.choices = key, default, kind, choices

    def __set_name__(self, owner: type, name: str) -> None:
        owner.config_options = (*owner.config_options, self.key)  # type: ignore[attr-defined]

    def __get__(self, model: Any, owner: type | None = None) -> Any:
        if model is None:
            return self
        default = self.default(model) if callable(self.default) else self.default
        value = self.kind(model.config.get(self.key, default))
        if self.choices and value not in self.choices:
            raise ValueError(
                f"{self.key} {value!r} is unknown; set it to one of {', '.join(map(repr, self.choices))}"
            )
        return value


class GPT2PreTrainedModel(AdapterMixin, nn.Module):
    """Base of every gpt2kit model.

    Class attributes a subclass may set:
        base_model_prefix: attribute (and checkpoint key prefix) of the `GPT2Model` inside a
            task model; `""` for `GPT2Model` itself.
        hf_architecture: the name written to `config.json`'s `architectures`; defaults to
            the class name (aliases such as `GPT2ForCausalLM` write `GPT2LMHeadModel` so
            `transformers` and vLLM pick the right class).
        task: the pipeline task name this head serves (used by `AutoModelForArchitecture.for_task`).

    A plain PyTorch module: CPU decoding's kernels, weight copies and packed weights belong
    to `gpt2kit.decode`, which `generate` and the server build around the model.
    """

    base_model_prefix = "transformer"
    config_options: tuple[str, ...] = ()  # extra config keys from_pretrained accepts
    hf_architecture: str | None = None
    task: str | None = None

    def __init__(self, config: GPT2Config):
        super().__init__()
        if not isinstance(config, GPT2Config):
            raise TypeError(
                f"config must be a gpt2kit.GPT2Config, got {type(config).__name__}; "
                "build one with GPT2Config(...) or GPT2Config.from_pretrained(path)"
            )
        self.config = config
        for name, value in vars(type(self)).items():  # check task options on construction
            if isinstance(value, ConfigOption):
                getattr(self, name)

    # -- initialization -----------------------------------------------------------------------
    def _init_module(self, module: nn.Module) -> None:
        """GPT-2's initialization for one module (normal(0, initializer_range), zero biases)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        """Initialize every submodule not already owned by an initialized backbone, then tie."""
        for child in self.children():
            if not isinstance(child, GPT2PreTrainedModel):
                child.apply(self._init_module)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share `lm_head.weight` with the token embedding when the config ties them."""
        lm_head = getattr(self, "lm_head", None)
        if isinstance(lm_head, nn.Linear) and self.config.tie_word_embeddings:
            lm_head.weight = self.get_input_embeddings().weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.backbone.wte

    @property
    def backbone(self) -> nn.Module:
        """The `GPT2Model` this model is built on."""
        return getattr(self, self.base_model_prefix) if self.base_model_prefix else self

    # -- conveniences -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameter count, tied weights counted once."""
        seen = {id(p): p for p in self.parameters()}
        n = sum(p.numel() for p in seen.values())
        if exclude_embeddings:
            # Their parameters, not `.weight`: a quantized model's tied embedding has none
            # (its rows are the LM head's integer buffers, which `n` does not count either).
            embeddings = (self.get_input_embeddings(), self.backbone.wpe)
            n -= sum(p.numel() for e in embeddings for p in e.parameters())
        return n

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None
    ) -> None:
        """Recompute block activations in the backward pass: less memory, ~30% more compute.

        `gradient_checkpointing_kwargs` (`transformers`' argument) may only repeat the
        setting used here, `{"use_reentrant": False}`.
        """
        extra = {k: v for k, v in (gradient_checkpointing_kwargs or {}).items()}
        if extra.pop("use_reentrant", False) or extra:
            raise UnsupportedArgumentError(
                f"gradient_checkpointing_kwargs={gradient_checkpointing_kwargs!r}: gpt2kit "
                "checkpoints with use_reentrant=False only; pass None or that"
            )
        self.backbone.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.backbone.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(self.backbone.gradient_checkpointing)

    def set_input_embeddings(self, embedding: nn.Embedding) -> None:
        if isinstance(self.backbone.wte, QuantizedEmbedding):
            raise ValueError(
                f"set_input_embeddings on an {self.quantization_config.method}-quantized "
                "model whose LM head is tied to the token embedding: the two share one "
                "quantized matrix, which a float embedding cannot join. Set the embedding on "
                "the fp32 model, then quantize it"
            )
        self.backbone.wte = embedding
        self.tie_weights()

    def get_output_embeddings(self) -> nn.Linear | QuantizedLinear | None:
        """The LM head (`lm_head`), or None for a model without one (as `transformers`).
        On a quantized model it is a `QuantizedLinear` (no float `.weight`; see
        docs/quantization.md)."""
        head = getattr(self, "lm_head", None)
        return head if isinstance(head, (nn.Linear, QuantizedLinear)) else None

    def set_output_embeddings(self, head: nn.Linear) -> None:
        self.lm_head = head

    @classmethod
    def can_generate(cls) -> bool:
        """Whether the class has `generate` (an LM head)."""
        return callable(getattr(cls, "generate", None))

    def resize_token_embeddings(
        self,
        new_num_tokens: int | None = None,
        pad_to_multiple_of: int | None = None,
        mean_resizing: bool = True,
    ) -> nn.Embedding:
        """Grow or shrink the vocabulary of the token embedding and of an LM head (tied or
        not), as `transformers` does: the size rounds up to `pad_to_multiple_of`; new rows
        are drawn around the mean of the old ones (`mean_resizing`, a normal with 1e-9 of
        their covariance; the mean itself where that is degenerate), else initialized as
        at construction. Returns the (same) embedding module, resized in place.

        A quantized model resizes too: its kept rows keep their integers and scales, and
        the new rows (drawn around the mean of the dequantized old rows) are quantized with
        the model's scheme."""
        embedding = self.get_input_embeddings()
        if new_num_tokens is None and pad_to_multiple_of is None:
            return embedding
        n = embedding.num_embeddings if new_num_tokens is None else int(new_num_tokens)
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
                raise ValueError(
                    f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}"
                )
            n = -(-n // pad_to_multiple_of) * pad_to_multiple_of
        if n < 1:
            raise ValueError(f"new_num_tokens must be >= 1, got {n}")
        if n == embedding.num_embeddings:
            return embedding
        if is_quantized(self):
            return self._resize_quantized(n, mean_resizing)
        embedding.weight = nn.Parameter(_resized_rows(embedding.weight, n, mean_resizing, self))
        embedding.num_embeddings = n
        head = self.get_output_embeddings()
        if head is not None:
            if self.config.tie_word_embeddings:
                head.weight = embedding.weight
            else:
                self._resize_float_head(head, n, mean_resizing)
            head.out_features = n
        self.config.vocab_size = n
        return embedding

    def _resize_float_head(self, head: nn.Module, n: int, mean_resizing: bool) -> None:
        """An untied float LM head resized to `n` rows (new rows drawn as the embedding's,
        new bias entries zero)."""
        head.weight = nn.Parameter(_resized_rows(head.weight, n, mean_resizing, self))
        if head.bias is not None:
            bias = head.bias.new_zeros(n)
            bias[: min(n, head.bias.numel())] = head.bias.detach()[:n]
            head.bias = nn.Parameter(bias)

    @torch.no_grad()
    def _resize_quantized(self, n: int, mean_resizing: bool) -> nn.Module:
        """`resize_token_embeddings` of a quantized model: the kept rows keep their
        integers and scales; new rows are drawn as for fp32 (around the mean of the
        dequantized old rows) and quantized. A float (untied) embedding resizes as usual."""
        embedding = self.get_input_embeddings()
        head = self.get_output_embeddings()
        if isinstance(embedding, QuantizedEmbedding):  # tied: one quantized matrix
            old = embedding.head.dequantize()
            embedding.head.resize_rows(n, _resized_rows(old, n, mean_resizing, self)[len(old) :])
            embedding.num_embeddings = n
        else:
            weight = _resized_rows(embedding.weight, n, mean_resizing, self)
            embedding.weight = nn.Parameter(weight, requires_grad=embedding.weight.requires_grad)
            embedding.num_embeddings = n
            if isinstance(head, QuantizedLinear):
                old = head.dequantize()
                head.resize_rows(n, _resized_rows(old, n, mean_resizing, self)[len(old) :])
            elif head is not None:  # (an LM head kept in float: modules_to_not_convert)
                self._resize_float_head(head, n, mean_resizing)
                head.out_features = n
        self.config.vocab_size = n
        return embedding

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload model",
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str = "5GB",
        tokenizer: Any = None,
    ) -> Any:
        """Save to a scratch folder and upload it to the Hub repository `repo_id` (created
        if needed) through `huggingface_hub`; returns its commit info."""
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            folder = self.save_pretrained(
                Path(scratch) / "model", max_shard_size=max_shard_size, tokenizer=tokenizer
            )
            return push_folder(
                folder,
                repo_id,
                commit_message=commit_message,
                private=private,
                token=token,
                revision=revision,
                create_pr=create_pr,
            )

    # -- checkpoints --------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls: type[M],
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args: Any,
        config: GPT2Config | None = None,
        dtype: torch.dtype | str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        device: torch.device | str | int | None = None,
        device_map: Any = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        low_cpu_mem_usage: bool | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        ignore_mismatched_sizes: bool = False,
        ignore_unexpected_keys: bool = False,
        output_loading_info: bool = False,
        quantization: Any = None,
        quantization_config: Any = None,
        **config_overrides: Any,
    ) -> M:
        """Load a Hugging Face GPT-2 checkpoint: a local folder or a Hub id.

        Args:
            pretrained_model_name_or_path: folder with `config.json` and weights
                (`model.safetensors`, sharded safetensors with index, or `pytorch_model.bin`),
                or a Hub id.
            config: use this config instead of the folder's `config.json`.
            dtype: e.g. `torch.bfloat16` or `"bfloat16"`; `"auto"` keeps the checkpoint's
                dtype; default fp32. `torch_dtype` is the older name of the same argument.
            device: where the weights go (they are read straight there).
            device_map: `transformers`' name for one device: a device, `{"": device}`, or
                `"auto"` (the GPU if there is one, else the CPU). Spreading layers over
                several devices is not supported (an error).
            attn_implementation: `"sdpa"` (default) or `"eager"` (explicit softmax).
            trust_remote_code: accepted for `transformers` scripts; no remote code ever runs.
            low_cpu_mem_usage: accepted and ignored, as `transformers` 5 does: the model is
                always built on the meta device and each weight read once.
            revision, token, cache_dir, local_files_only, force_download: how a Hub id is
                fetched (`gpt2kit.hub`); unused for a local folder.
            ignore_mismatched_sizes: re-initialize weights whose shapes differ instead of failing.
            ignore_unexpected_keys: drop unknown backbone keys instead of failing.
            output_loading_info: also return a `LoadReport` (missing/unexpected/new keys).
            quantization: `"int8"` (per output channel) or `"int4"` (group-wise) weight-only
                quantization of every linear layer and the (tied) LM head
                (`gpt2kit.quantization`, docs/quantization.md); a folder written by
                `gpt2kit convert --quantize` loads quantized without it.
            quantization_config: the same as a `gpt2kit.QuantizationConfig`, a dict, or a
                compressed-tensors config (transformers-style code).
            **config_overrides: changed config fields, e.g. `num_labels=3`; any other
                keyword is an error naming it.

        Example:
            >>> model = GPT2LMHeadModel.from_pretrained("path/to/gpt2")  # doctest: +SKIP
        """
        if model_args:
            raise UnsupportedArgumentError(
                f"{cls.__name__}.from_pretrained takes the path and keywords only; got "
                f"{len(model_args)} extra positional argument(s). Pass config=... by name"
            )
        check_config_overrides(cls, config_overrides)
        impl = check_attn_implementation(attn_implementation)
        # a LoRA adapter folder (peft format): its base model, then the adapter on it
        adapter, pretrained_model_name_or_path, config = base_of_adapter_folder(
            pretrained_model_name_or_path, config
        )
        requested = resolve_quantization(quantization, quantization_config)
        reader = quantized_files.QuantizedReader()
        model, report = load_model(
            cls,
            pretrained_model_name_or_path,
            config=config,
            dtype=resolve_dtype_argument(dtype, torch_dtype),
            device=resolve_device_argument(device, device_map),
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            ignore_unexpected_keys=ignore_unexpected_keys,
            config_overrides=config_overrides,
            hub_options=HubOptions(revision, token, cache_dir, local_files_only, force_download),
            read_state=reader,
        )
        model = quantized_files.finish(model, requested, reader)
        if impl is not None:
            model.set_attn_implementation(impl)
        model.name_or_path = str(pretrained_model_name_or_path)  # (recorded in adapters' configs)
        if adapter is not None:
            model.load_adapter(adapter)
        return (model, report) if output_loading_info else model  # type: ignore[return-value]

    @classmethod
    def from_config(
        cls: type[M],
        config: GPT2Config,
        *,
        dtype: torch.dtype | str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
    ) -> M:
        """A randomly initialized model for `config` (as `transformers`' `_from_config`)."""
        resolved = resolve_dtype_argument(dtype, torch_dtype)
        if resolved == "auto":
            resolved = None
        model = cls(config)
        if resolved is not None:
            model.to(_as_torch_dtype(resolved))
        impl = check_attn_implementation(attn_implementation)
        if impl is not None:
            model.set_attn_implementation(impl)
        return model

    @property
    def attn_implementation(self) -> str:
        """`"sdpa"` or `"eager"`: how every attention layer computes softmax(q k^T) v."""
        return self.__dict__.get("_attn_implementation", "sdpa")

    def set_attn_implementation(self, name: str) -> None:
        """Switch every attention layer to `"sdpa"` (fused kernel) or `"eager"` (explicit
        softmax, fp32 scores, the path `output_attentions` takes)."""
        name = check_attn_implementation(name) or "sdpa"
        for module in self.modules():
            if hasattr(module, "eager_attention"):
                module.eager_attention = name == "eager"
        self.__dict__["_attn_implementation"] = name
        # (read by `transformers`-style code as `model.config._attn_implementation`)
        self.config.__dict__["_attn_implementation"] = name

    def complete_loading(self, report: Any) -> None:
        """Called by the checkpoint loader after the weights are in, before it logs `report`
        (a `gpt2kit.checkpoint.LoadReport`): a model that derives new weights from loaded
        ones does it here and removes them from `report.new_keys`."""

    def save_pretrained(
        self,
        directory: str | os.PathLike,
        *,
        max_shard_size: int | str = "5GB",
        tokenizer: Any = None,
        dtype: torch.dtype | None = None,
    ) -> Path:
        """Write a folder `transformers` loads: safetensors (sharded past `max_shard_size`),
        `config.json`, and the tokenizer files when `tokenizer` is given. Atomic: the folder
        is built beside the target and renamed into place. A model with adapters writes the
        active adapter's `peft` folder instead (`adapter_config.json`,
        `adapter_model.safetensors`), as `transformers` does; `merge_and_unload()` first
        for a full checkpoint.
        """
        if self.has_adapters:
            if dtype is not None:
                raise UnsupportedArgumentError(
                    "save_pretrained(dtype=...) on a model with adapters: the adapter is saved in "
                    "its own dtype; call merge_and_unload() first to save a converted full model"
                )
            return save_adapter(self, directory, tokenizer=tokenizer)

        if getattr(self, "quantization_config", None) is not None:  # (compressed-tensors)
            if dtype is not None:
                raise ValueError("save_pretrained(dtype=...) of a quantized model: drop dtype")
            return save_quantized(
                self, directory, max_shard_size=max_shard_size, tokenizer=tokenizer
            )
        return save_model(
            self,
            directory,
            max_shard_size=max_shard_size,
            tokenizer=tokenizer,
            dtype=dtype,
            extra_files=self.save_extra_files,
        )

    def load_extra_files(self, folder: Path) -> None:
        """Called by the checkpoint loader with the folder it read, after the weights: a class
        that owns other files of the folder reads them here (`GenerationMixin` reads
        `generation_config.json`), so the loader below the models knows no such format."""

    def save_extra_files(self, folder: Path) -> None:
        """Called by `save_pretrained` with the save's scratch folder (renamed into place
        with the weights, atomically): a class writes the files it owns there."""


ATTN_IMPLEMENTATIONS = ("sdpa", "eager")

# `transformers` keywords a script may pass that gpt2kit does not take, and what to do.
_KNOWN_UNSUPPORTED = {
    "use_safetensors": "gpt2kit reads safetensors when present, else pytorch_model.bin; drop it",
    "subfolder": "pass the subfolder's path (or download it) instead",
    "variant": "gpt2kit reads model.safetensors / pytorch_model.bin only",
    "load_in_8bit": "bitsandbytes is not used; pass quantization='int8' (weight-only int8)",
    "load_in_4bit": "bitsandbytes is not used; pass quantization='int4' (weight-only int4)",
    "output_attentions": "pass output_attentions=True to the forward call",
    "output_hidden_states": "pass output_hidden_states=True to the forward call",
    "return_dict": "pass return_dict=False to the forward call",
    "from_tf": "gpt2kit reads PyTorch checkpoints only",
    "from_flax": "gpt2kit reads PyTorch checkpoints only",
    "max_memory": "device_map over several devices is not supported; load onto one device",
    "offload_folder": "offloading is not supported; load onto one device",
    "proxies": "configure proxies through huggingface_hub (HTTPS_PROXY)",
}


def check_config_overrides(cls: type, overrides: dict[str, Any]) -> None:
    """Raise naming the first keyword that is neither a config field nor an option of `cls`."""
    from dataclasses import fields

    allowed = {f.name for f in fields(GPT2Config)} - {"extra"}
    allowed |= set(ALIASES) | {"num_labels", "label2id"} | set(getattr(cls, "config_options", ()))
    for key in overrides:
        if key not in allowed:
            hint = _KNOWN_UNSUPPORTED.get(
                key,
                "from_pretrained takes config fields (e.g. num_labels=3, n_positions=512) and "
                "the loading keywords documented on it",
            )
            raise UnsupportedArgumentError(
                f"{cls.__name__}.from_pretrained got an unsupported keyword {key!r}: {hint}"
            )


def check_attn_implementation(name: str | None) -> str | None:
    if name is None or name in ATTN_IMPLEMENTATIONS:
        return name
    raise UnsupportedArgumentError(
        f"attn_implementation={name!r} is not supported; use 'sdpa' (default) or 'eager'"
    )


def _as_torch_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype (try 'float32' or 'bfloat16')")
    return resolved


def resolve_dtype_argument(
    dtype: torch.dtype | str | None, torch_dtype: torch.dtype | str | None
) -> torch.dtype | str | None:
    """One dtype from `dtype` and its older name `torch_dtype` ("auto" kept as is)."""
    if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
        raise ValueError(
            f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass one (dtype)"
        )
    value = dtype if dtype is not None else torch_dtype
    if value is None or value == "auto":
        return value
    return _as_torch_dtype(value)


def resolve_device_argument(device: Any, device_map: Any) -> torch.device | None:
    """One device from gpt2kit's `device` and `transformers`' `device_map`."""
    if isinstance(device_map, dict):
        if set(device_map) != {""}:
            raise UnsupportedArgumentError(
                "device_map placing modules on different devices is not supported; gpt2kit "
                "loads onto one device: pass device_map='auto', a device, or {'': device}"
            )
        device_map = device_map[""]
    if device_map == "auto":
        device_map = "cuda" if torch.cuda.is_available() else "cpu"
    elif device_map in ("balanced", "balanced_low_0", "sequential"):
        raise UnsupportedArgumentError(
            f"device_map={device_map!r} spreads layers over devices, which gpt2kit does not; "
            "pass device_map='auto' or one device"
        )
    resolved = [torch.device(d) for d in (device, device_map) if d is not None]
    if len(resolved) == 2 and resolved[0] != resolved[1]:
        raise ValueError(f"device={device!r} and device_map={device_map!r} disagree; pass one")
    return resolved[0] if resolved else None


def _resized_rows(
    weight: torch.Tensor, n: int, mean_resizing: bool, model: GPT2PreTrainedModel
) -> torch.Tensor:
    """`weight [V, d]` cut or extended to `[n, d]` (see `resize_token_embeddings`)."""
    old = weight.detach()
    keep = min(n, old.shape[0])
    new = old.new_empty(n, old.shape[1])
    new[:keep] = old[:keep]
    added = n - keep
    if added:
        if mean_resizing:
            rows = old.float()
            mean = rows.mean(0)
            centered = rows - mean
            covariance = centered.T @ centered / rows.shape[0]
            covariance = 1e-9 * covariance
            if bool(torch.distributions.constraints.positive_definite.check(covariance).all()):
                dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance)
                new[keep:] = dist.sample((added,)).to(new.dtype)
            else:  # (fewer rows than dimensions, ...: the mean itself)
                new[keep:] = mean.to(new.dtype)
        else:
            nn.init.normal_(new[keep:], mean=0.0, std=model.config.initializer_range)
    return new
