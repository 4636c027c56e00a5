"""The backbone's arguments, written once, and the decorator every head's `forward` wears.

A head's `forward` lists only its own arguments (`labels`, `start_positions`, ...) and
passes the rest through as `**backbone: Unpack[BackboneArgs]` to `GPT2Model.forward`.
`head_forward` then gives that `forward`:

- the full signature (its own arguments, then every `BackboneArgs` name as a keyword),
  so `inspect.signature`, IDEs and `transformers.Trainer`'s column filtering see
  `attention_mask` and the rest, as on `transformers`' classes;
- `return_dict=False`: the output as a tuple of its non-None fields, `transformers`' order;
- `num_items_in_batch` (`transformers.Trainer` passes it to models whose `forward` takes
  `**kwargs`): given to heads that declare it (the LM heads normalize their summed loss by
  it, as `transformers`' do); the other heads' losses are means, as `transformers`' are.

A keyword that is neither the head's nor the backbone's fails in `GPT2Model.forward` with
Python's "unexpected keyword argument" error naming it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypedDict, TypeVar

import torch
from typing_extensions import Unpack  # (typing.Unpack from Python 3.11; torch depends on this)

__all__ = [
    "BACKBONE_ARGS",
    "BackboneArgs",
    "Unpack",
    "fold_choices",
    "head_forward",
    "pad_token_lists",
]

F = TypeVar("F", bound=Callable[..., Any])


class BackboneArgs(TypedDict, total=False):
    """`GPT2Model.forward`'s keywords (shapes in its docstring), `transformers`' names."""

    past_key_values: Any  # KVCache, a transformers Cache, or the legacy tuple
    attention_mask: torch.Tensor  # [B, past + T] 0/1, or [B, 1, T, past + T] bool/additive
    token_type_ids: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    inputs_embeds: torch.Tensor  # [B, T, d]
    encoder_hidden_states: torch.Tensor  # [B, S, d]
    encoder_attention_mask: torch.Tensor  # [B, S]
    use_cache: bool
    output_attentions: bool
    output_hidden_states: bool
    cache: Any  # transformers 5.x's name of past_key_values
    cache_position: torch.Tensor  # [T], checked: the cache appends


BACKBONE_ARGS: tuple[str, ...] = tuple(BackboneArgs.__annotations__)


def head_forward(forward: F) -> F:
    """Decorate a head's `forward(self, <own args>, **backbone)`; see the module docstring."""
    signature = inspect.signature(forward)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    own = {p.name for p in params}
    params += [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=getattr(kind, "__forward_arg__", kind),
        )
        for name, kind in BackboneArgs.__annotations__.items()
        if name not in own
    ]
    if "return_dict" not in own:
        params.append(
            inspect.Parameter("return_dict", inspect.Parameter.KEYWORD_ONLY, default=None)
        )
    params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
    takes_item_count = "num_items_in_batch" in own

    @functools.wraps(forward)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return_dict = kwargs.pop("return_dict", None)
        if not takes_item_count:
            kwargs.pop("num_items_in_batch", None)
        out = forward(self, *args, **kwargs)
        return out.to_tuple() if return_dict is False else out

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


# Backbone arguments that come one per token row, with their rank without a choice axis.
PER_ROW = {"input_ids": 2, "attention_mask": 2, "token_type_ids": 2, "position_ids": 2}
PER_ROW["inputs_embeds"] = 3


def fold_choices(args: dict[str, Any], choices: bool | None = True) -> tuple[dict[str, Any], tuple]:
    """`(args, lead)`: the per-row arguments of `args` from `[B, C, T, ...]` to
    `[B * C, T, ...]` (every choice one backbone row), and `lead = (B, C)`; with
    `choices=False` the arguments as they are and `lead = (B,)`; with `choices=None` either,
    by the rank of `input_ids` (3-D: choices) or else of `inputs_embeds` (4-D)."""
    out, lead = dict(args), ()
    if choices is None:
        name = "inputs_embeds" if args.get("input_ids") is None else "input_ids"
        given = args.get(name)
        choices = given is not None and torch.as_tensor(given).dim() == PER_ROW[name] + 1
    for name, rank in PER_ROW.items():
        if args.get(name) is None:
            continue
        t = out[name] = torch.as_tensor(args[name])
        if not choices:
            lead = t.shape[:1]
            continue
        if t.dim() != rank + 1:
            raise ValueError(
                f"{name} must be [batch, choices, tokens{', d' if rank == 3 else ''}] for a "
                f"multiple-choice model; got shape {tuple(t.shape)}. Stack each example's "
                "choices (gpt2kit.tasks.multiple_choice.MultipleChoiceCollator does), or use "
                "GPT2ForSequenceClassification for one sequence per example"
            )
        out[name], lead = t.reshape(-1, *t.shape[2:]), t.shape[:2]
    return out, tuple(lead)


def pad_token_lists(
    rows: Sequence[Sequence[int]], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded `input_ids [N, T]` (pad id 0, masked out) and `attention_mask [N, T]`
    for token-id lists (the heads that take lists: scoring, texts, document windows)."""
    T = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)
