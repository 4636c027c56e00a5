"""What every pipeline shares: model and tokenizer loading, device, batching, input shapes.

A pipeline turns raw inputs (strings, dicts) into task results (labels, spans, text) with
one call. Subclasses say which model classes they accept and implement `_run_batch`
(a list of inputs -> a list of results); this base class loads the model (a folder, a Hub
id, the embedded default model, or a model object), finds its tokenizer, and feeds inputs
through in batches:

- one input (a string, a dict) -> one result;
- a list -> a list of results, computed `batch_size` at a time;
- any other iterable (a generator, a file) -> a generator of results, read and computed
  lazily `batch_size` at a time, so a stream of any length runs in bounded memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn

# the model and tokenizer resolver every entry point shares (re-exported here for callers
# of `gpt2kit.pipelines.base`)
from ..loading import (  # noqa: F401 - re-exported
    DEFAULT_MODEL_DIR,
    TOKENIZER_FILES,
    checkpoint_class,
    default_model_path,
    load_model,
    load_tokenizer,
)
from ..models.auto import model_class
from ..quantization import quantize_model, resolve
from ..tasks import registry

logger = logging.getLogger("gpt2kit")


class WrongModelError(ValueError):
    """The model given to a pipeline is not of a class the task can use."""


def _class_names(cls: type) -> set[str]:
    return {c.__name__ for c in cls.__mro__}


class Pipeline:
    """Base of every pipeline; see the module docstring.

    Args:
        model: a folder, a Hub id, or a loaded gpt2kit model; `None` means the embedded
            default model for the tasks that can use it (text generation, zero-shot,
            feature extraction).
        tokenizer: a `GPT2Tokenizer` or a folder/name to load one from (see `load_tokenizer`).
        device: where to run (`"cpu"`, `"cuda"`, `"cuda:1"`, a `torch.device`).
        dtype: weights dtype (`torch.bfloat16` or `"bfloat16"`, ...); default the loader's.
        batch_size: inputs per forward pass.
        **defaults: task options used by every call unless the call overrides them.

    Class attributes of a subclass:
        task: the task name.
        model_classes: names of the model classes (or base classes) the task accepts, set
            from the task registry (`registry.pipeline_classes(task)`) for a registered
            task; a subclass for a task the registry lacks may set its own (none: any
            model).
        any_model: accept a model of any class (feature extraction reads any backbone).
        load_as: class to load a checkpoint as when its own class is acceptable through a
            base class (e.g. `GPT2LMHeadModel` checkpoints load as `GPT2ForCausalLM`).
        uses_default_model: whether `model=None` means the embedded default model.
    """

    task: ClassVar[str] = ""
    model_classes: ClassVar[tuple[str, ...]] = ()
    any_model: ClassVar[bool] = False
    load_as: ClassVar[dict[str, str]] = {}
    uses_default_model: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if registry.lookup(cls.task) is not None and "model_classes" not in cls.__dict__:
            cls.model_classes = registry.pipeline_classes(registry.get(cls.task).name)

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        batch_size: int = 8,
        quantization: Any = None,
        **defaults: Any,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self.defaults = defaults
        source = self._resolve_source(model)
        self.model = self._load_model(
            model if isinstance(model, nn.Module) else source, device, dtype, quantization
        )
        self.model.eval()
        self.tokenizer = load_tokenizer(tokenizer, source)

    # -- loading ------------------------------------------------------------------------------
    def _resolve_source(self, model: Any) -> str | None:
        if isinstance(model, nn.Module):
            return None
        if model is None:
            if not self.uses_default_model:
                raise ValueError(
                    f"the {self.task!r} pipeline needs model=PATH_OR_HUB_ID (a fine-tuned "
                    f"{' or '.join(self.model_classes)} checkpoint); the embedded default model "
                    "is a language model"
                )
            return str(default_model_path())
        if isinstance(model, (str, os.PathLike)):
            return str(model)
        raise TypeError(
            f"model must be a path, a Hub id or a gpt2kit model, got {type(model).__name__}"
        )

    def _accepts(self, cls: type) -> bool:
        if self.any_model or not self.model_classes:
            return True
        return bool(_class_names(cls) & set(self.model_classes))

    def _wrong(self, what: str, cls_name: str) -> WrongModelError:
        return WrongModelError(
            f"the {self.task!r} pipeline needs a {' or '.join(self.model_classes)} model; "
            f"{what} is a {cls_name}. Fine-tune one for this task (gpt2kit train --task ...) or "
            "load the checkpoint for it with AutoModelForArchitecture.for_task"
        )

    def _load_model(
        self, model: Any, device: Any, dtype: Any, quantization: Any = None
    ) -> nn.Module:
        if isinstance(model, nn.Module):
            if not self._accepts(type(model)):
                raise self._wrong("the model given", type(model).__name__)
            if device is not None or dtype is not None:
                model = model.to(device=device, dtype=_as_dtype(dtype))
            if quantization is not None:  # (weight-only int8 / int4, `gpt2kit.quantization`)
                model = quantize_model(model, resolve(quantization))  # type: ignore[arg-type]
            return model
        cls = checkpoint_class(model)
        if not self._accepts(cls):
            raise self._wrong(f"the checkpoint {model}", cls.__name__)
        cls = model_class(self.load_as[cls.__name__]) if cls.__name__ in self.load_as else cls
        return load_model(
            model, cls, device=device, dtype=_as_dtype(dtype), quantization=quantization
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, inputs: Any, **options: Any) -> Any:
        """Run the task on one input, a list of inputs, or an iterable of inputs.

        `options` override the pipeline's defaults for this call.
        """
        params = self._params(options)
        if self._is_single(inputs):
            return self._run_batch([inputs], params)[0]
        if isinstance(inputs, (list, tuple)):
            return [
                r
                for chunk in _chunks(iter(inputs), self.batch_size)
                for r in self._run_batch(chunk, params)
            ]
        if isinstance(inputs, Iterable):
            return self._iterate(iter(inputs), params)
        raise TypeError(
            f"{self.task} pipeline got {type(inputs).__name__}; pass one input, a list or an iterable"
        )

    def _iterate(self, inputs: Iterator[Any], params: dict[str, Any]) -> Iterator[Any]:
        for chunk in _chunks(inputs, self.batch_size):
            yield from self._run_batch(chunk, params)

    def _params(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**self.defaults, **options}

    def _is_single(self, inputs: Any) -> bool:
        """Whether `inputs` is one input (default: a string or a dict)."""
        return isinstance(inputs, (str, dict))

    def _run_batch(self, inputs: list[Any], params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    # -- helpers for subclasses ---------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def _pad(self, seqs: list[list[int]], side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, T]` ids and mask; padding never changes a row's result (positions follow the mask)."""
        T = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), T), pad, dtype=torch.long)
        mask = torch.zeros(len(seqs), T, dtype=torch.long)
        for i, s in enumerate(seqs):
            cols = slice(T - len(s), T) if side == "left" else slice(0, len(s))
            ids[i, cols] = torch.tensor(s, dtype=torch.long)
            mask[i, cols] = 1
        return ids.to(self.device), mask.to(self.device)

    def _truncate(self, ids: list[int], keep: str = "start") -> list[int]:
        """Cut to the model's context; logs when it does."""
        n = self.model.config.n_positions
        if len(ids) <= n:
            return ids
        logger.warning("input of %d tokens cut to the model's %d positions", len(ids), n)
        return ids[:n] if keep == "start" else ids[-n:]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, model={type(self.model).__name__}, device={self.device})"


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16")
    return value


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def label_name(config: Any, index: int) -> str:
    """`id2label[index]`, or `LABEL_{index}` when the config names no labels."""
    names = getattr(config, "id2label", None) or {}
    return str(names.get(index, f"LABEL_{index}"))
