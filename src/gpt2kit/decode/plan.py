"""A CPU decoding step of a GPT-2 LM, batch 1 or a few rows at one position, in one
native call (`native.run_step`: embedding, every block, final norm, LM head), and the
checks that decide when that is the same computation as the modules'. `CPUDecoder`
(decode/decoder.py) calls `lm_step` for each plain step; anything else runs the model's
modules.

Why: once the products stream the weights near the memory bandwidth (`decode/native`),
the ~15 PyTorch ops per block between them (layer norms, activation, residual adds,
module calls) are a fifth of a GPT-2 small fp32 step on a 2-core CPU; in one call they
take microseconds. The whole step also saves the embedding, final norm and LM-head calls
and the Python of two model forwards (~1 ms of a ~33 ms step: 1.02-1.04x fp32, 1.07x
bf16 tokens/s over the blocks call; measured interleaved, `benchmarks/README.md`).

When: the kernels are built, no autograd, compiler or training, and: CPU, fp32 or bf16 throughout, an activation the kernel computes, no
cross-attention, the stock module types (an adapter, a parametrization or a subclass may
change the math), every dropout the kernel skips switched off, and no forward hooks on
the modules it stands in for (they would not run). Anything else takes the module path,
which computes the same function (and raises its errors: a token id outside the
vocabulary, a full context).

The checked weights and their pointer table are kept in a `_Plan` with what they were
checked on: the module tree (which child sits under which name), the parameter objects
and their data pointers, the attentions' `scale`, the norms' `eps`, the MLPs' `act`, and
the modules' hook dicts. A step re-reads those (~80-300 us for 12 blocks, where the full
checks take ~1 ms); a change to any of them (replacing a module or a parameter, `.to()`)
builds a new plan. The projection weights in the table are the decoder's copies where it
keeps them (`DecodeWeights`: one arena on 2 MiB pages), else the parameters themselves.
"""

from __future__ import annotations

import operator

import torch
from torch import nn

from .. import native
from ..nn.backbone import ACT_FNS, GPT2MLP, GPT2Attention, GPT2Block, GPT2Model, Linear
from ..nn.cache import KVCache
from ..nn.dropout import Dropout
from ..quantization.modules import ACTIVATION_ROWS, QuantizedEmbedding, QuantizedLinear

# the projection types the kernel stands in for (same math: `F.linear`)
LINEAR_TYPES = (nn.Linear, Linear)
# ... and those the whole-step kernel also reads (weight-only int8 / int4)
STEP_LINEAR_TYPES = (nn.Linear, Linear, QuantizedLinear)

# A module class may name, in its own body, the only children the decoder stands in for
# (a LoRA layer: its `base_layer`; its adapters' own small products run as they are, and
# walking them, ~16 modules per layer with 4 adapters, made each decoder call ~10x
# slower to set up). A mark, not an import: the decoder never imports the adapters.
DECODE_CHILDREN = "_gpt2kit_decode_children"


def decode_modules(model: nn.Module) -> list[nn.Module]:
    """`model.modules()` (the same order, each module once) without the children that a
    module's class leaves out through `DECODE_CHILDREN`: what the decoder stands in for."""
    out: list[nn.Module] = []
    seen: set[int] = set()
    stack = [model]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        out.append(module)
        children = module._modules
        only = type(module).__dict__.get(DECODE_CHILDREN)
        kids = [children.get(k) for k in only] if only is not None else list(children.values())
        stack.extend(c for c in reversed(kids) if c is not None)
    return out


# per block: (parent, child) names of the modules the kernel replaces, in order
_TREE = (("", "ln_1"), ("", "attn"), ("attn", "c_attn"), ("attn", "c_proj"))
_TREE += (("", "ln_2"), ("", "mlp"), ("mlp", "c_fc"), ("mlp", "c_proj"))
# the modules whose weight and bias the kernel reads, in its order
_WEIGHTED = ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")


class _Plan:
    """A model's blocks as the kernel reads them (`blocks`, a `native.Blocks`; with `lm`,
    also the `head` tensors `native.run_step` reads), whether the kernel computes them
    (`ok`), and what that was checked on."""

    def __init__(
        self, model: GPT2Model, lm: nn.Module | None, copies: dict[int, torch.Tensor]
    ) -> None:
        config = model.config
        self.copies = copies  # id(parameter) -> the decoder's copy of it, read instead
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
        self.head: list[torch.Tensor | None] = []  # a whole step's ends (`native.HEAD_WEIGHTS`)
        self.tensors: list[torch.Tensor | None] = []  # keeps what `table` points to alive
        # quantized projections: their scales (in the kernel's order), the kinds seen
        # ((bits, group size), or None for a floating-point projection), the int tensors
        self.qscales: list[torch.Tensor | None] = []
        self.qkinds: set[tuple[int, int] | None] = set()
        self.qtensors: set[int] = set()
        self.activation = config.activation_function
        self._edge(model._modules, "h", model.h)
        self.n_blocks = len(model.h)  # (a block appended to `h` leaves the others' edges)
        blocks = [self._block(model, i, block) for i, block in enumerate(model.h)]
        # the dropouts the kernel skips: each must be off (`training` False) at each step
        self.dropouts = [m for m in model.h.modules() if isinstance(m, nn.Dropout)]
        head_ok = lm is None or self._head(model, lm)
        self.eps = self.norms[0].eps if self.norms else 0.0
        self.dtype = self.tensors[0].dtype if self.tensors and self.tensors[0] is not None else None
        quant = next(iter(self.qkinds)) if len(self.qkinds) == 1 else None
        self.ok = (
            len(self.qkinds) == 1  # (the kernel reads one kind of weight throughout)
            and (quant is None or self.dtype == torch.float32)
            and all(
                t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu"
                for t in self.qscales
                if t is not None
            )
            and bool(blocks)
            and all(blocks)
            and head_ok
            and config.activation_function in native.ACTIVATIONS
            and not config.add_cross_attention
            and all(
                a.n_head == self.attentions[0].n_head and a.n_head * a.head_dim == config.n_embd
                for a in self.attentions
            )
            and self.dtype in (torch.float32, torch.bfloat16)
            and all(  # (the blocks' norms share one eps; the final norm has its own)
                n.normalized_shape == (config.n_embd,) and n.eps == self.eps
                for n in self.norms[: 2 * self.n_blocks]
            )
            and all(
                t is None
                or (
                    (t.dtype == self.dtype or id(t) in self.qtensors)
                    and t.device.type == "cpu"
                    and t.is_contiguous()
                )
                for t in self.tensors + self.head
            )
        )
        self.scales = list(map(_SCALE, self.attentions))
        self.norm_eps = list(map(_EPS, self.norms))
        self.activations = list(map(_ACT, self.mlps))
        self.blocks: native.Blocks | None = None  # what the kernel reads, where it runs
        if self.ok:
            # (the modules' own head count, which the module path uses)
            self.n_head = self.attentions[0].n_head
            self.head_dim = config.n_embd // self.n_head
            inner = blocks[0]["mlp.c_fc"].out_features  # type: ignore[index]
            self.blocks = native.Blocks.build(
                self.tensors,
                self.scales,
                self.n_head,
                inner,
                self.eps,
                self.activation,
                None if quant is None else (*quant, self.qscales),
            )

    def _block(self, model: GPT2Model, index: int, block: nn.Module) -> dict[str, nn.Module] | None:
        """Record block `index`'s modules and parameters; None if the kernel cannot run it."""
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
        for name in _WEIGHTED:
            self.tensors += (self._weight(found[name]), self._param(found[name], "bias"))
        types = {"": GPT2Block, "ln_1": nn.LayerNorm, "attn": GPT2Attention}
        types |= {"ln_2": nn.LayerNorm, "mlp": GPT2MLP}
        linears = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
        if (
            any(type(found[name]) is not t for name, t in types.items())
            or any(type(found[name]) not in STEP_LINEAR_TYPES for name in linears)
            or found["mlp"].act is not ACT_FNS.get(model.config.activation_function)
            or found["ln_1"].weight is None
            or found["ln_2"].weight is None
        ):
            return None
        self.attentions.append(found["attn"])
        self.norms += (found["ln_1"], found["ln_2"])
        self.mlps.append(found["mlp"])
        return found

    def _head(self, model: GPT2Model, lm: nn.Module) -> bool:
        """Record the ends of a whole step (`native.run_step`) of the LM-head model `lm`
        around `model`: embeddings, final norm, LM head; whether the kernel computes them."""
        self._edge(lm._modules, "transformer", model)
        found = {name: model._modules.get(name) for name in ("wte", "wpe", "drop", "ln_f")}
        found["lm_head"] = lm._modules.get("lm_head")
        for name, module in found.items():
            self._edge((lm if name == "lm_head" else model)._modules, name, module)
        types = {"wpe": (nn.Embedding,), "drop": (Dropout, nn.Dropout)}
        types |= {"ln_f": (nn.LayerNorm,)}
        wte_tied_quantized = (
            type(found["wte"]) is QuantizedEmbedding and found["wte"].head is found["lm_head"]
        )
        if (
            any(type(found[name]) not in t for name, t in types.items())
            or (type(found["lm_head"]) not in STEP_LINEAR_TYPES)
            or not (type(found["wte"]) is nn.Embedding or wte_tied_quantized)
        ):
            return False
        for module in (model, *found.values()):
            self.hook_dicts += (module._forward_hooks, module._forward_pre_hooks)
        self.dropouts.append(found["drop"])
        self.norms.append(found["ln_f"])
        lm_w = self._weight(found["lm_head"])  # (its scales first: the kernel's order)
        if wte_tied_quantized:
            wte = lm_w
            self.qscales.append(self.qscales[-1])
        else:
            wte = self._param(found["wte"], "weight")
            self.qscales.append(None)
        self.head = [wte, self._param(found["wpe"], "weight")]
        self.head += (self._param(found["ln_f"], "weight"), self._param(found["ln_f"], "bias"))
        self.head += (lm_w, self._param(found["lm_head"], "bias"))
        wpe, ln_w = self.head[1], self.head[2]
        d = model.config.n_embd

        def width(t: torch.Tensor, module: nn.Module) -> int:
            bits = getattr(module, "bits", None)
            return t.shape[1] * 2 if bits == 4 else t.shape[1]

        return (
            found["wte"].max_norm is None  # (renormalizes rows as it reads them)
            and found["wpe"].max_norm is None
            and ln_w is not None
            and found["ln_f"].normalized_shape == (d,)
            and all(
                t is not None and t.dim() == 2 and width(t, m) == d
                for t, m in (
                    (wte, found["lm_head"] if wte_tied_quantized else found["wte"]),
                    (wpe, found["wpe"]),
                    (lm_w, found["lm_head"]),
                )
            )
        )

    def _weight(self, module: nn.Module) -> torch.Tensor | None:
        """A product's weight as the kernel reads it: the parameter (or the decoder's copy),
        or a `QuantizedLinear`'s int8 / packed int4 buffer (its scales recorded in
        `qscales`), recorded to be checked each step."""
        if type(module) is not QuantizedLinear:
            if type(module) in LINEAR_TYPES:
                self.qkinds.add(None)
            return self._param(module, "weight")
        group = module.group_size or 0
        self.qkinds.add((module.bits, group))
        self.qscales.append(self._param(module, "weight_scale", buffers=True))
        q = self._param(module, "qweight", buffers=True)
        if q is not None:
            self.qtensors.add(id(q))
        return q

    def _param(self, module: nn.Module, name: str, buffers: bool = False) -> torch.Tensor | None:
        """`module`'s parameter (or with `buffers`, buffer) `name` (or None), recorded to
        be checked each step."""
        params = module._buffers if buffers else module._parameters
        p = params.get(name)
        self.param_dicts.append(params)
        self.param_names.append(name)
        self.param_ids.append(id(p))
        if p is None:
            return None
        self.present.append(p)
        self.pointers.append(p.data_ptr())
        copy = self.copies.get(id(p))
        return copy if copy is not None else p.detach()

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
_TRAINING = operator.attrgetter("training")


def lm_step(
    lm: nn.Module,
    input_ids: torch.Tensor | None,
    cache: KVCache,
    home: dict,
    copies: dict[int, torch.Tensor],
) -> torch.Tensor | None:
    """The logits `[B, 1, vocab]` of one decoding step of the LM-head model `lm` (its
    backbone at `lm.transformer`, its head at `lm.lm_head`) on the tokens `input_ids
    [B, 1]` (B <= `MAX_STEP_ROWS`) after the `cache`d ones, in one native call
    (`native.run_step`), the cache advanced; None, with nothing changed but the cache's
    capacity, where the module path must run (the caller checks that no other forward
    argument is set: no attention mask, so every row is at the cache's length). The plan
    is kept in `home`, reading the decoder's weight `copies` where given.

    Why: after the blocks went native, the embedding, final norm, LM head and the Python
    of the two forwards around them were ~1 ms of a ~33 ms GPT-2 small step; at batch 8
    the module path's per-block PyTorch ops were ~10 ms of a ~45 ms int8 step."""
    if (
        input_ids is None
        or input_ids.dim() != 2
        or input_ids.shape[1] != 1
        or not 1 <= input_ids.shape[0] <= MAX_STEP_ROWS
        or input_ids.dtype not in (torch.int64, torch.int32)  # (else the module path's error)
        or input_ids.device.type != "cpu"
        or lm.training
        or torch.is_grad_enabled()
        or torch.compiler.is_compiling()
    ):
        return None
    plan = _checked_plan(home, lm.transformer, lm, copies)
    if not plan.ok:
        return None
    rows, pos = input_ids.shape[0], cache.length
    wte, wpe = plan.head[0], plan.head[1]
    tokens = input_ids.reshape(rows).to(torch.int64, copy=True)
    low, high = (int(tokens), int(tokens)) if rows == 1 else map(int, torch.aminmax(tokens))
    if not (low >= 0 and high < wte.shape[0] and pos < wpe.shape[0]):  # type: ignore[union-attr]
        return None  # (the module path raises the error that names the problem)
    caches = _reserve(plan, cache, rows)
    if caches is None:
        return None
    final_eps = plan.norm_eps[-1]  # (the final norm's own)
    logits = native.run_step(tokens, plan.blocks, plan.head, final_eps, caches, pos)  # type: ignore[arg-type]
    cache.advance(1)
    return logits.view(rows, 1, -1)


# The most rows a whole step takes: the products' few-row limit, where the module path
# multiplies with the same kernels (`native.MAX_FP32_ROWS`; quantized layers keep fp32
# activations up to `ACTIVATION_ROWS`), so both paths compute the same sums.
MAX_STEP_ROWS = min(native.MAX_FP32_ROWS, ACTIVATION_ROWS)


def _checked_plan(
    home: dict, model: GPT2Model, lm: nn.Module, copies: dict[int, torch.Tensor]
) -> _Plan:
    """The plan kept in `home["plan"]`, rebuilt when what it was checked on changed (or
    the decoder's copies did)."""
    plan: _Plan | None = home.get("plan")
    if (
        plan is None
        or plan.copies is not copies
        or plan.n_blocks != len(model.h)
        or not plan.current()
    ):
        plan = home["plan"] = _Plan(model, lm, copies)
    return plan


def _reserve(plan: _Plan, cache: KVCache, rows: int) -> list[torch.Tensor] | None:
    """Each block's key and value buffers for `rows` rows with room for one more
    position, where the kernel may run the plan now (else None: also where the cache
    holds positions of another batch size, whose error the module path raises)."""
    if (
        plan.blocks is None
        or plan.hooked()
        or any(map(_TRAINING, plan.dropouts))  # (one switched on: e.g. Monte Carlo dropout)
        or type(cache) is not KVCache
    ):
        return None
    pos, H, hs = cache.length, plan.n_head, plan.head_dim
    if pos and any(k is None or k.shape[0] != rows for k in cache.keys[: plan.n_blocks]):
        return None
    caches: list[torch.Tensor] = []
    like = plan.tensors[0]
    for i in range(plan.n_blocks):
        keys, values = cache.reserve(i, pos + 1, rows, H, hs, like)  # type: ignore[arg-type]
        # (a cache built from a user's legacy tuple may hold another dtype or layout)
        if not (
            keys.dtype == values.dtype == plan.dtype
            and keys.shape == values.shape
            and keys.shape[2] == cache.keys[0].shape[2]  # type: ignore[union-attr]
            and keys.is_contiguous()
            and values.is_contiguous()
        ):
            return None
        caches += (keys, values)
    return caches
