"""`CPUDecoder`: runs a model's decoding steps on CPU faster than its modules alone would.

The models are plain PyTorch modules. Decoding on CPU is memory-bound (every step reads
every weight), so what makes it fast is here, beside the compiled/static decoder of
`generation/compiled.py`: `generate` and the server's batcher build a `CPUDecoder` with
`cpu_decoder(model, rows)` and call it where they would call the model. Per call it

- runs a plain batch-1 step of a GPT-2 LM (`GPT2LMHeadModel` and subclasses that keep its
  `forward`) as one native call, token id to logits (`decode/plan.py`, `native.run_step`);
- otherwise calls the model with its projections and self-attentions standing in for the
  stock modules for the length of that call (the instance's `forward`, set in the
  module's `__dict__` and removed when the call returns: nothing stays on the model):
  products of up to `native.MAX_FP32_ROWS` rows through the native kernel (one pass over
  the weights for all rows: a short prompt's prefill, a small batch's step), larger fp32
  batches through oneDNN-packed weights, one new token's attention in one native call;
  anything else (autograd, another device or dtype, a compiler tracing) the module's own
  `forward`.

The weights it reads are its own copies (`decode/weights.py`: the arena, column-major or
packed copies, checked against each parameter's address and version before every call and
copied again when they changed), so the model's parameters stay ordinary tensors: a
checkpoint, `state_dict()` or an optimizer after `generate` sees exactly what it saw
before. The copies are kept per model (weakly: they go with the model) so that
consecutive `generate` calls do not copy the weights each time; `release(model)` frees
them.

A new CPU decode path goes here: a branch in `CPUDecoder.__call__` for a whole step, or
in `CPUDecoder._linear` / `_attention` for one product or one attention, with its test
against the module path (tests/test_native*.py, tests/test_decode.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import native
from ..adapters.layers import LoraLinear, current_rows
from ..nn import backbone
from ..nn.backbone import PLAIN_LM_STEP, GPT2Attention, Linear
from ..nn.cache import KVCache
from ..nn.outputs import CausalLMOutput
from ..quantization.gemm import bf16_linear, int8_matmul
from ..quantization.modules import QuantizedLinear
from . import packed
from .plan import LINEAR_TYPES, decode_modules, lm_step
from .weights import DecodeWeights, projection_weights

_held: weakref.WeakKeyDictionary[nn.Module, DecodeWeights] = weakref.WeakKeyDictionary()
_held_lock = threading.Lock()
_off: contextvars.ContextVar[bool] = contextvars.ContextVar("gpt2kit_decode_off", default=False)

# arguments a plain batch-1 step may carry (anything else set: the model's own forward)
_STEP_ARGS = frozenset({"input_ids", "past_key_values", "use_cache", "logits_to_keep"})


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within this block (this thread), `generate` and new server batchers decode with the
    model's modules alone: the plain PyTorch path, for comparison or debugging.

    Example:
        >>> with gpt2kit.decode.disabled():  # doctest: +SKIP
        ...     ids = model.generate(prompt)
    """
    token = _off.set(True)
    try:
        yield
    finally:
        _off.reset(token)


def release(model: nn.Module) -> None:
    """Free the weight copies CPU decoding keeps for `model` (rebuilt by the next call)."""
    with _held_lock:
        _held.pop(model, None)


def held_bytes(model: nn.Module) -> int:
    """Bytes of weight copies CPU decoding keeps beside `model`'s own weights."""
    weights = _held.get(model)
    return weights.nbytes() if weights is not None else 0


def cpu_decoder(model: nn.Module, rows: int) -> CPUDecoder | None:
    """A `CPUDecoder` for decoding `rows` rows at a time with `model`, or None where it
    does not apply (not on CPU, not fp32/bf16, in training mode, inside `disabled()`)."""
    if _off.get() or model.training:
        return None
    weights = projection_weights(model)
    # (a weight-only quantized model: no float projections; its activations' dtype is its
    # parameters', and its int8 / int4 buffers are read in place, never copied)
    ref = weights[0] if weights else _quantized_reference(model)
    if ref is None or ref.device.type != "cpu":
        return None
    if ref.dtype not in (torch.float32, torch.bfloat16):
        return None
    kernel = native.load() is not None  # (builds the kernels on first use)
    with _held_lock:
        held = _held.get(model)
        if held is None:
            held = _held[model] = DecodeWeights()
    held.prepare(model, rows, kernel)
    return CPUDecoder(model, held, kernel)


def _quantized_reference(model: nn.Module) -> torch.Tensor | None:
    """A quantized model's first parameter (its activations' dtype and device), else None."""
    if getattr(model, "quantization_config", None) is None:
        return None
    return next(model.parameters(), None)


class CPUDecoder:
    """Stands in for `model` in a decoding loop: called with the model's arguments, returns
    what the model returns (see the module docstring). Other attributes are the model's."""

    fixed_batch = False  # (the loop may drop finished rows)

    def __init__(self, model: nn.Module, weights: DecodeWeights, kernel: bool) -> None:
        self.model, self.weights, self.kernel = model, weights, kernel
        # `GPT2LMHeadModel.forward` carries this mark (set in models/lm.py; a subclass that
        # overrides `forward` lacks it): the decoder reads a mark, never imports the heads.
        self._whole_steps = kernel and getattr(type(model).forward, PLAIN_LM_STEP, False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        model = self.model
        if (
            self._whole_steps
            and not args
            and self._plain_step(kwargs)
            # (the model's own call would run these: then it must be called)
            and "forward" not in model.__dict__
            and not model._forward_hooks
            and not model._forward_pre_hooks
        ):
            cache = kwargs["past_key_values"]
            held = self.weights
            if not held.fresh():
                held.sync()
            logits = lm_step(model, kwargs["input_ids"], cache, held.home, held.views)
            if logits is not None:
                return CausalLMOutput(logits=logits, past_key_values=cache)
        with self._standing_in():
            return model(*args, **kwargs)

    @staticmethod
    def _plain_step(kwargs: dict[str, Any]) -> bool:
        return (
            type(kwargs.get("past_key_values")) is KVCache
            and kwargs.get("return_logits") is not False
            and not kwargs.get("output_attentions")
            and not kwargs.get("output_hidden_states")
            and all(
                v is None or k in _STEP_ARGS or k in _FALSE_ARGS
                for k, v in kwargs.items()
                if k != "return_logits"
            )
        )

    @contextlib.contextmanager
    def _standing_in(self) -> Iterator[None]:
        """The decoder's products and attention in the model's modules for one call."""
        held = self.weights
        with held.lock:
            held.users += 1
            if held.users == 1:
                try:
                    self._install()
                except BaseException:
                    held.users -= 1
                    _uninstall(held)
                    raise
        try:
            yield
        finally:
            with held.lock:
                held.users -= 1
                if held.users == 0:
                    _uninstall(held)

    def _install(self) -> None:
        held = self.weights
        installed, weights, seen = [], [], set()
        for module in decode_modules(self.model):  # (one walk: this runs every call)
            kind = type(module)
            if kind in LINEAR_TYPES:
                weight = module.weight
                if type(weight) is nn.Parameter and weight.dim() == 2 and id(weight) not in seen:
                    seen.add(id(weight))
                    weights.append(weight)
                forward = self._linear
            elif kind is GPT2Attention and not module.is_cross_attention and self.kernel:
                forward = self._attention
            elif kind is QuantizedLinear and self.kernel:
                forward = self._qlinear
            elif kind is LoraLinear and self.kernel:
                forward = self._lora
            else:
                continue
            if "forward" not in module.__dict__:  # (an instance's own forward: leave it)
                module.__dict__["forward"] = functools.partial(forward, module)
                installed.append(module)
        held.installed = installed
        held.sync(weights)

    def _linear(self, module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """`module(x)`: the native kernel for a few rows, packed weights for more (fp32)."""
        weight, bias = module.weight, module.bias
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.numel() == 0:
            return type(module).forward(module, x)
        rows = x.numel() // x.shape[-1]
        if torch.compiler.is_compiling():  # (a compiled step: the kernel as an opaque op)
            if (
                rows == 1
                and self.kernel
                and native.gemv_op is not None
                and native.supports(x, weight)
            ):
                return native.gemv_op(x, weight, bias)
            return type(module).forward(module, x)
        held = self.weights
        copy = held.copy_of(weight)
        fp32 = x.dtype == torch.float32
        if self.kernel and x.dtype == weight.dtype:
            if fp32:
                few = rows <= native.MAX_FP32_ROWS
            else:  # bf16: one row, or rows PyTorch would multiply one at a time
                few = x.dtype == torch.bfloat16 and (
                    rows == 1 or (rows < Linear.UPCAST_ROWS and not backbone._cpu_has_bf16_units())
                )
            source = copy if copy is not None and held.kind == "arena" else weight
            if few and source.is_contiguous():
                return native.gemv(x, source, bias)
        if fp32 and rows <= Linear.FEW_ROWS:
            if rows == 1 and copy is not None and held.kind == "column":
                return F.linear(x, copy, bias)
            packed_weight = held.packed_for(weight) if rows > 1 else None
            if packed_weight is not None:
                y = packed.linear(x.reshape(rows, x.shape[-1]), packed_weight, bias)
                return y.view(*x.shape[:-1], module.out_features)
        return type(module).forward(module, x)

    def _qlinear(self, module: QuantizedLinear, x: torch.Tensor) -> torch.Tensor:
        """`module(x)` for a quantized layer: fp32 rows on CPU, up to
        `native.MAX_FP32_ROWS` at a time, through the native kernel that reads the int8 /
        int4 weights as stored; more rows (a prompt) with the module's prompt numerics
        (`QuantizedLinear.prompt_numerics`, `input_activations`): "int8" the module's int8
        GEMM with its rounding and scaling in native passes, "bfloat16" /
        None the layer's weights dequantized by the native kernel then multiplied in bf16 /
        fp32 (compute-bound there: measured faster than the kernel in chunks of 32 rows,
        which widens every weight once per pair of rows); anything else the module's
        forward."""
        q, bias = module.qweight, module.bias
        if (
            torch.is_grad_enabled()
            or torch.compiler.is_compiling()
            or x.device.type != "cpu"
            or x.dtype != torch.float32
            or x.numel() == 0
            or q.device.type != "cpu"
            or not (q.is_contiguous() and module.weight_scale.is_contiguous())
            or (bias is not None and bias.dtype != torch.float32)
        ):
            return type(module).forward(module, x)
        rows = x.numel() // x.shape[-1]
        acts = module.prompt_numerics(x)  # (None up to ACTIVATION_ROWS rows)
        if rows <= native.MAX_FP32_ROWS and acts is None:
            args = (module.weight_scale, module.bits, module.group_size, module.in_features, bias)
            return native.qgemv(x, q, *args)
        if acts == "int8":
            # `prompt_product`'s int8 GEMM, its activation rounding and scaling each one
            # native pass (the same values as its PyTorch ops, which take 5 and 3)
            xq, sx = native.quantize_rows(x.reshape(rows, x.shape[-1]))
            y = native.w8a8_linear(xq, sx, q, module.weight_scale, bias)  # (AMX)
            if y is None:
                y = native.scale_rows(int8_matmul(xq, q), sx, module.weight_scale, bias)
            return y.view(*x.shape[:-1], module.out_features)
        if module.out_features > QUANT_DEQUANTIZED_ROWS:  # (a large LM head: blocks of rows)
            return type(module).forward(module, x)
        w = native.dequantize(
            q, module.weight_scale, module.bits, module.group_size, module.in_features
        )
        if acts == "bfloat16":  # (== prompt_product's bf16 blocks: same values, one block)
            y = bf16_linear(x, w).float()
            return y.add_(bias) if bias is not None else y
        return F.linear(x, w, bias)

    def _lora(self, module: LoraLinear, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """`module(x)` for a LoRA layer in a batch that mixes adapters (`mixed_batch`):
        the base product through the decoder's own stand-in for `base_layer` (native,
        packed or quantized kernel), then each row's own low-rank update added in place
        by one native call (`native.lora_delta`: r dot products and r row updates per
        token, on the calling thread for a decoding step). Measured on the 2-core build
        machine under load, the two small BLAS products this replaces cost as much as the
        base product once a second OpenMP thread had to be woken for each. Anything else
        (one active adapter, autograd, bf16, hooks on the base layer) the module's forward."""
        rows = current_rows()
        base = module.base_layer
        if (
            rows is None
            or args
            or kwargs
            or module.disabled
            or torch.is_grad_enabled()
            or torch.compiler.is_compiling()
            or x.dtype != torch.float32
            or x.device.type != "cpu"
            or base._forward_hooks
            or base._forward_pre_hooks
        ):
            return type(module).forward(module, x, *args, **kwargs)
        plan = module.mixed_plan(x, rows)  # (raises for merged adapters, a wrong row count)
        result = base(x)
        if plan is None:  # (no row takes an adapter of this layer)
            return result
        a_cat, b_cat_t, _, lo, hi = plan
        if a_cat.dtype != torch.float32 or not result.is_contiguous():
            return type(module).forward(module, x)
        return native.lora_delta(x.contiguous(), a_cat, b_cat_t, lo, hi, result)

    def _attention(
        self,
        module: GPT2Attention,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Any = None,
        encoder_hidden_states: torch.Tensor | None = None,
        output_attentions: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`module`'s self-attention; one new token per row over a growing `KVCache`
        without a padding mask in one native call (`native.attend_one`)."""
        if (
            x.shape[1] == 1
            and mask is None
            and type(cache) is KVCache
            and encoder_hidden_states is None
            and not output_attentions
            and not kwargs
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16)
        ):
            qkv = module.c_attn(x)
            B, d = x.shape[0], x.shape[-1]
            pos = cache.length
            keys, values = cache.reserve(
                module.layer_idx, pos + 1, B, module.n_head, d // module.n_head, qkv
            )
            # (a cache built from a user's legacy tuple may hold another dtype: the
            # module path raises PyTorch's error for it)
            if keys.dtype == values.dtype == qkv.dtype and keys.is_contiguous():
                y = native.attend_one(qkv, keys, values, pos, module.n_head, module.scale)
                return module.resid_dropout(module.c_proj(y)), None
        return type(module).forward(
            module, x, mask, cache, encoder_hidden_states, output_attentions, **kwargs
        )


def _uninstall(held: DecodeWeights) -> None:
    for module in held.installed:
        module.__dict__.pop("forward", None)
    held.installed = []


# A prompt's quantized product dequantizes the whole layer at once up to this many output
# rows (GPT-2's projections; 3072 x 768 fp32 is 9 MiB); a larger one (an LM head asked for
# every position's logits) takes the module's blocked path.
QUANT_DEQUANTIZED_ROWS = 8192

# the step's flags that may be passed as False / 0 (their defaults)
_FALSE_ARGS = frozenset({"output_attentions", "output_hidden_states"})
