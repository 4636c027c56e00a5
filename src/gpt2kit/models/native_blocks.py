"""All transformer blocks of a batch-1 CPU decoding step in one native call
(`gpt2kit.native.run_blocks`), and the checks that decide when that is the same
computation as the modules'.

Why: once the products stream the weights near the memory bandwidth (`gpt2kit/native`),
the ~15 PyTorch ops per block between them (layer norms, activation, residual adds,
module calls) are a fifth of a GPT-2 small fp32 step on a 2-core CPU; in one call they
take microseconds (measured in `benchmarks/bench_generation.py`).

When: the model turned the kernels on (`use_decode_layout`), no autograd, compiler or
training (checked by `GPT2Model`), and here: CPU, fp32 or bf16 throughout, an activation
the kernel computes, no cross-attention, the stock module types (an adapter, a
parametrization or a subclass may change the math), and no forward hooks on the blocks'
modules (they would not run). Anything else takes the module path, which computes the
same function.

The checked weights and their pointer table are kept in a `_Plan` with what they were
checked on: the module tree (which child sits under which name), the parameter objects
and their data pointers, the attentions' `scale`, the norms' `eps`, the MLPs' `act`, and
the modules' hook dicts. A step re-reads those (~80 us for 12 blocks, where the full
checks take ~1 ms); a change to any of them (replacing a module or a parameter, `.to()`,
a layout change) builds a new plan.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import torch
from torch import nn

from .. import native
from .cache import KVCache

if TYPE_CHECKING:
    from .backbone import GPT2Model

# per block: (parent, child) names of the modules the kernel replaces, in order
_TREE = (("", "ln_1"), ("", "attn"), ("attn", "c_attn"), ("attn", "c_proj"))
_TREE += (("", "ln_2"), ("", "mlp"), ("mlp", "c_fc"), ("mlp", "c_proj"))
# the modules whose weight and bias the kernel reads, in its order
_WEIGHTED = ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")


class _Plan:
    """A model's blocks as `native.run_blocks` reads them (`table`), whether the kernel
    computes them (`ok`), and what that was checked on."""

    def __init__(self, model: GPT2Model) -> None:
        config = model.config
        self.parents: list[dict] = []  # child `names[i]` of `parents[i]` (a `_modules`) ...
        self.names: list[str] = []
        self.child_ids: list[int] = []  # ... is this module (or None) ...
        self.param_dicts: list[dict] = []  # ... and likewise for `_parameters` ...
        self.param_names: list[str] = []
        self.param_ids: list[int] = []
        self.present: list[nn.Parameter] = []  # (the parameters that are not None) ...
        self.pointers: list[int] = []  # ... with these data pointers
        self.hook_dicts: list[dict] = []  # the modules' forward (pre-)hooks, checked each step
        self.attentions: list[nn.Module] = []  # their `scale`s, ...
        self.norms: list[nn.Module] = []  # ... `eps`s and ...
        self.mlps: list[nn.Module] = []  # ... `act`s are re-read each step
        self.tensors: list[torch.Tensor | None] = []  # keeps what `table` points to alive
        self.activation = config.activation_function
        self.switch = None  # the first block's c_attn: `native_kernel` turns the kernel on
        self._edge(model._modules, "h", model.h)
        self.n_blocks = len(model.h)  # (a block appended to `h` leaves the others' edges)
        blocks = [self._block(model, i, block) for i, block in enumerate(model.h)]
        self.eps = self.norms[0].eps if self.norms else 0.0
        self.dtype = self.tensors[0].dtype if self.tensors and self.tensors[0] is not None else None
        self.ok = (
            bool(blocks)
            and all(blocks)
            and config.activation_function in native.ACTIVATIONS
            and not config.add_cross_attention
            and self.dtype in (torch.float32, torch.bfloat16)
            and all(
                n.normalized_shape == (config.n_embd,) and n.eps == self.eps for n in self.norms
            )
            and all(
                t is None
                or (t.dtype == self.dtype and t.device.type == "cpu" and t.is_contiguous())
                for t in self.tensors
            )
        )
        self.table = native.pointer_table(self.tensors)
        self.scales = list(map(_SCALE, self.attentions))
        self.norm_eps = list(map(_EPS, self.norms))
        self.activations = list(map(_ACT, self.mlps))
        self.inner = blocks[0]["mlp.c_fc"].out_features if self.ok else 0  # type: ignore[index]

    def _block(self, model: GPT2Model, index: int, block: nn.Module) -> dict[str, nn.Module] | None:
        """Record block `index`'s modules and parameters; None if the kernel cannot run it."""
        from .backbone import ACT_FNS, GPT2MLP, GPT2Attention, GPT2Block, Linear

        self._edge(model.h._modules, str(index), block)
        found = {"": block}
        for parent, name in _TREE:
            child = found[parent]._modules.get(name)
            self._edge(found[parent]._modules, name, child)
            if child is None:
                return None
            found[f"{parent}.{name}" if parent else name] = child
        for module in found.values():  # (registering a hook adds to these dicts)
            self.hook_dicts += (module._forward_hooks, module._forward_pre_hooks)
        self.switch = self.switch or found["attn.c_attn"]
        for name in _WEIGHTED:
            params = found[name]._parameters
            for p_name in ("weight", "bias"):
                p = params.get(p_name)
                self.param_dicts.append(params)
                self.param_names.append(p_name)
                self.param_ids.append(id(p))
                self.tensors.append(None if p is None else p.detach())
                if p is not None:
                    self.present.append(p)
                    self.pointers.append(p.data_ptr())
        types = {"": GPT2Block, "ln_1": nn.LayerNorm, "attn": GPT2Attention}
        types |= {"attn.c_attn": Linear, "attn.c_proj": Linear, "ln_2": nn.LayerNorm}
        types |= {"mlp": GPT2MLP, "mlp.c_fc": Linear, "mlp.c_proj": Linear}
        if (
            any(type(found[name]) is not t for name, t in types.items())
            or found["mlp"].act is not ACT_FNS.get(model.config.activation_function)
            or found["ln_1"].weight is None
            or found["ln_2"].weight is None
        ):
            return None
        self.attentions.append(found["attn"])
        self.norms += (found["ln_1"], found["ln_2"])
        self.mlps.append(found["mlp"])
        return found

    # A copy or a pickle of the model gets no plan (raw pointers into this model's memory);
    # its first step builds its own.
    def __deepcopy__(self, memo: dict) -> None:
        return None

    def __reduce__(self) -> tuple:
        return (type(None), ())

    def _edge(self, parent: dict, name: str, child: nn.Module | None) -> None:
        self.parents.append(parent)
        self.names.append(name)
        self.child_ids.append(id(child))

    def current(self) -> bool:
        """Whether the modules and parameters are still the ones checked (C-level loops:
        this runs every step)."""
        children = map(dict.get, self.parents, self.names)
        params = map(dict.get, self.param_dicts, self.param_names)
        return (
            list(map(id, children)) == self.child_ids
            and list(map(id, params)) == self.param_ids
            # (same objects, so the recorded ones' pointers are the current ones')
            and list(map(torch.Tensor.data_ptr, self.present)) == self.pointers
            and list(map(_SCALE, self.attentions)) == self.scales
            and list(map(_EPS, self.norms)) == self.norm_eps
            and list(map(_ACT, self.mlps)) == self.activations
        )

    def hooked(self) -> bool:
        """Whether a forward hook would see one of the modules (then they must run)."""
        return (
            any(self.hook_dicts)
            or bool(nn.modules.module._global_forward_hooks)
            or bool(nn.modules.module._global_forward_pre_hooks)
        )


_SCALE = operator.attrgetter("scale")
_EPS = operator.attrgetter("eps")
_ACT = operator.attrgetter("act")


def run(model: GPT2Model, x: torch.Tensor, cache: KVCache) -> bool:
    """Run `model`'s blocks on `x [1, 1, d]` in place, writing this token's keys and values
    into `cache`; False, with nothing changed but the cache's capacity, where the module
    path must run instead."""
    plan: _Plan | None = model.__dict__.get("_native_blocks_plan")
    if plan is None or plan.n_blocks != len(model.h) or not plan.current():
        plan = model.__dict__["_native_blocks_plan"] = _Plan(model)
    if (
        not plan.ok
        or not plan.switch.native_kernel  # type: ignore[union-attr]
        or plan.hooked()
        or x.dtype != plan.dtype
        or x.device.type != "cpu"
    ):
        return False
    config = model.config
    pos, H, hs = cache.length, config.n_head, config.head_dim
    caches: list[torch.Tensor] = []
    for i in range(len(plan.scales)):  # (plan.ok: one per block)
        keys, values = cache.reserve(i, pos + 1, 1, H, hs, x)
        # (a cache built from a user's legacy tuple may hold another dtype or layout)
        if not (
            keys.dtype == values.dtype == x.dtype
            and keys.shape == values.shape
            and keys.shape[2] == cache.keys[0].shape[2]  # type: ignore[union-attr]
            and keys.is_contiguous()
            and values.is_contiguous()
        ):
            return False
        caches += (keys, values)
    native.run_blocks(
        x, plan.table, caches, plan.scales, H, plan.inner, pos, plan.eps, plan.activation
    )
    return True
