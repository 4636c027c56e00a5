"""Serving several LoRA adapters from one model: `gpt2kit serve --adapter NAME=PATH`.

The pieces the server needs, kept out of `app.py` / `batching.py`: parse the flags, load
each adapter onto the model (frozen, unmerged), map a request's `"model"` to the adapter
its rows take (the base model's own name: none), the ids `/v1/models` lists, and the
context a batched forward runs in so that every row gets its own adapter
(`gpt2kit.adapters.mixed_batch`: one base product for the whole batch, each adapter's
low-rank update on its rows only, as S-LoRA / punica do).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..adapters import BASE, mixed_batch


class AdapterSpecError(ValueError):
    """A bad `--adapter` value or an unknown model name in a request."""


def parse_adapter_args(values: Sequence[str] | None) -> dict[str, str]:
    """`["sql=./sql-lora", "chat=./chat"]` -> `{"sql": "./sql-lora", "chat": "./chat"}`.

    Example:
        >>> parse_adapter_args(["sql=./a", "chat=./b"])
        {'sql': './a', 'chat': './b'}
    """
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise AdapterSpecError(
                f"--adapter {value!r}: write NAME=PATH (e.g. --adapter sql=./sql-lora)"
            )
        if name in out:
            raise AdapterSpecError(
                f"--adapter {name!r} is given twice; each adapter needs its own name"
            )
        if name == BASE or "." in name:
            raise AdapterSpecError(
                f"--adapter {name!r}: pick a name without dots, other than {BASE!r}"
            )
        out[name] = path
    return out


def load_adapters(model: Any, adapters: dict[str, str], base_name: str) -> list[str]:
    """Load each adapter folder onto `model` under its name (frozen, unmerged); returns
    the names. A name equal to the base model's is an error (requests could not tell)."""
    for name, path in adapters.items():
        if name == base_name:
            raise AdapterSpecError(
                f"--adapter {name!r} has the base model's name; requests use it for the base model"
            )
        model.load_adapter(path, adapter_name=name)
    return list(adapters)


def adapter_for(requested: str | None, base_name: str, adapters: Sequence[str]) -> str:
    """The adapter a request's rows take: its `"model"` names one, the base's name (or no
    name) means none (`BASE`); anything else is an error listing the served ids."""
    if requested is None or requested == base_name:
        return BASE
    if requested in adapters:
        return requested
    raise AdapterSpecError(
        f"model {requested!r} is not served here; use one of {', '.join([base_name, *adapters])}"
    )


def model_ids(base_name: str, adapters: Sequence[str]) -> list[str]:
    """What `/v1/models` lists: the base model, then each adapter."""
    return [base_name, *adapters]


@contextlib.contextmanager
def rows_context(model: Any, row_adapters: Sequence[str]) -> Iterator[None]:
    """Run one batched forward (prefill or decoding step) with row `i` on adapter
    `row_adapters[i]`; a model without adapters runs as is."""
    if not getattr(model, "has_adapters", False):
        yield
        return
    with mixed_batch(row_adapters):
        yield


@contextlib.contextmanager
def base_only(model: Any) -> Iterator[None]:
    """Run the base model, whatever adapter is active (task endpoints, embeddings: the
    server answers them with the base model only). Every adapted module is disabled for
    the block and put back as it was; the batcher's worker is the model's only user."""
    if not getattr(model, "has_adapters", False):
        yield
        return
    from ..adapters.inject import wrappers

    modules = [module for _, module in wrappers(model)]
    before = [module.disabled for module in modules]
    for module in modules:
        module.disabled = True
    try:
        yield
    finally:
        for module, was in zip(modules, before, strict=True):
            module.disabled = was
