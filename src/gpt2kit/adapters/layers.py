"""The modules an adapter puts in a model: `LoraLinear` around a projection and
`ModulesToSave` around a module trained in full (a task head).

They mirror `peft`'s (`peft.tuners.lora.Linear`, `peft.utils.ModulesToSaveWrapper`) down to
the submodule names (`base_layer`, `lora_A.<adapter>`, `lora_B.<adapter>`,
`original_module`, `modules_to_save.<adapter>`), so a model's `state_dict()` keys are the
ones `peft` gives the same model, and the computation is `peft`'s op for op:
`base(x) + lora_B(lora_A(dropout(x))) * scaling`, summed over the active adapters.

They replace the model's modules in place (the wrapped module is kept inside), so the
model classes know nothing about adapters. `gpt2kit.decode` does not run the fused batch-1
step over them; its CPU decoder stands in for each `base_layer` (native / packed /
quantized products) and, in a `mixed_batch`, adds the rows' updates from `mixed_plan`
with one native call.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

BASE = "__base__"  # (`peft`'s name for rows that take no adapter)
# per-row adapter names of the batch being computed (`mixed_batch`), None: the active ones
_ROWS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "gpt2kit_adapter_rows", default=None
)


@contextlib.contextmanager
def mixed_batch(adapter_names: Sequence[str]) -> Iterator[None]:
    """Within this block (this thread), row `i` of every batch the adapted layers see
    takes adapter `adapter_names[i]` (`"__base__"`: none), whatever is active: rows of
    different adapters in one forward, as `peft`'s `adapter_names=` argument and S-LoRA /
    punica batch them. Each layer computes the base product once for the whole batch and
    each adapter's low-rank update on its own rows only.

    Example:
        >>> with mixed_batch(["sql", "__base__", "chat"]):  # doctest: +SKIP
        ...     logits = model(input_ids).logits
    """
    names = tuple(adapter_names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError("adapter_names must be a sequence of adapter names (strings), one per row")
    token = _ROWS.set(names)
    try:
        yield
    finally:
        _ROWS.reset(token)


def current_rows() -> tuple[str, ...] | None:
    """The per-row adapter names `mixed_batch` set for this thread (None outside one)."""
    return _ROWS.get()


def _row_groups(rows: tuple[str, ...], batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    if len(rows) != batch:
        raise ValueError(
            f"mixed_batch got {len(rows)} adapter names for a batch of {batch} rows; pass one per row"
        )
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(rows):
        groups.setdefault(name, []).append(i)
    return {n: torch.tensor(i, device=device) for n, i in groups.items()}


def is_quantized_linear(module: nn.Module) -> bool:
    """A weight-only quantized projection (`gpt2kit.quantization.QuantizedLinear`: int8 /
    int4 buffers `qweight` + `weight_scale`, a float `dequantize()`), known by its surface:
    the quantization package sits beside this one, not below it."""
    buffers = module._buffers
    return (
        "qweight" in buffers
        and "weight_scale" in buffers
        and callable(getattr(module, "dequantize", None))
        and hasattr(module, "in_features")
        and hasattr(module, "out_features")
    )


def _float_kind(module: nn.Module) -> dict[str, Any]:
    """The device and float dtype of `module`'s activations: its weight's, or for a
    quantized projection its bias's (fp32 without one)."""
    weight = module._parameters.get("weight")
    if weight is not None:
        return {"device": weight.device, "dtype": weight.dtype}
    bias = module._parameters.get("bias")
    device = module._buffers["qweight"].device
    return {"device": device, "dtype": bias.dtype if bias is not None else torch.float32}


QUANTIZED_MERGE = (
    "the base is weight-only quantized: merging would quantize the merged weight again and add "
    "its rounding error on top of the adapter, so gpt2kit does not merge into it. Load the "
    "base without quantization, load the adapter, merge (merge_and_unload(), or gpt2kit convert "
    "ADAPTER OUT --merge-adapter), then quantize the merged model (gpt2kit convert OUT OUT-int8 "
    "--quantize int8); or serve the adapter unmerged on the quantized base"
)


class LoraLinear(nn.Module):
    """`base_layer(x) + sum over active adapters of lora_B(lora_A(dropout(x))) * scaling`.

    `base_layer` is the model's own `nn.Linear` (weight `[out, in]`) or a weight-only
    quantized `QuantizedLinear` (QLoRA: its int8 / int4 buffers stay frozen, its forward is
    differentiable in `x`, so gradients reach the adapters of earlier layers);
    `lora_A[name]` is an `nn.Linear(in, r)` and `lora_B[name]` an `nn.Linear(r, out)`, both
    without bias, in the activations' float dtype, as in `peft`. `merge` adds
    `B @ A * scaling` into a float base weight in place (the parameter object and its
    storage stay; its version changes, so copies of it are refreshed); a quantized base is
    not merged into (`QUANTIZED_MERGE`).
    """

    # The CPU decoder (`gpt2kit.decode.plan.DECODE_CHILDREN`, read as a mark: decode sits
    # above this package) stands in for `base_layer` only: the base product runs through its
    # native / packed kernels, the adapters' rank-r products as PyTorch ops (`_mixed`).
    _gpt2kit_decode_children = ("base_layer",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.r: dict[str, int] = {}
        self.lora_alpha: dict[str, float] = {}
        self.scaling: dict[str, float] = {}
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.disabled = False

    # the base layer's surface, for code that reads it off the projection
    @property
    def weight(self) -> torch.Tensor:
        if self.quantized:
            raise AttributeError(
                "this LoRA layer's base is weight-only quantized and has no float weight; "
                "base_layer.dequantize() builds one"
            )
        return self.base_layer.weight

    @property
    def quantized(self) -> bool:
        """Whether the base layer is weight-only quantized (QLoRA)."""
        return is_quantized_linear(self.base_layer)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    def add(
        self, name: str, r: int, alpha: float, scaling: float, dropout: float, init: bool | str
    ) -> None:
        """Create adapter `name` (rank `r`) on this layer, initialized as `peft` does."""
        kw = _float_kind(self.base_layer)
        a = nn.Linear(self.in_features, r, bias=False, **kw)
        b = nn.Linear(r, self.out_features, bias=False, **kw)
        if init is not False:
            with torch.no_grad():
                if init is True:
                    nn.init.kaiming_uniform_(a.weight, a=5**0.5)
                else:  # "gaussian"
                    nn.init.normal_(a.weight, std=1 / r)
                nn.init.zeros_(b.weight)
        self.lora_A[name], self.lora_B[name] = a, b
        self.lora_dropout[name] = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.r[name], self.lora_alpha[name], self.scaling[name] = r, alpha, scaling

    def remove(self, name: str) -> None:
        if name in self.merged_adapters:
            self.unmerge([name])
        for table in (self.lora_A, self.lora_B, self.lora_dropout):
            if name in table:
                del table[name]
        for table in (self.r, self.lora_alpha, self.scaling):
            table.pop(name, None)
        if name in self.active_adapters:
            self.active_adapters.remove(name)

    def delta_weight(self, name: str) -> torch.Tensor:
        """`B @ A * scaling` in the base weight's layout `[out, in]`, computed in fp32."""
        a = self.lora_A[name].weight.float()
        b = self.lora_B[name].weight.float()
        return (b @ a) * self.scaling[name]

    @torch.no_grad()
    def merge(self, names: list[str] | None = None) -> None:
        if self.quantized:
            raise ValueError(f"merge_adapter: {QUANTIZED_MERGE}")
        weight = self.base_layer.weight
        for name in names if names is not None else self.active_adapters:
            if name in self.lora_A and name not in self.merged_adapters:
                weight.add_(self.delta_weight(name).to(weight.dtype))
                self.merged_adapters.append(name)

    @torch.no_grad()
    def unmerge(self, names: list[str] | None = None) -> None:
        if not self.merged_adapters:
            return
        weight = self.base_layer.weight
        for name in list(reversed(self.merged_adapters)):
            if names is None or name in names:
                weight.sub_(self.delta_weight(name).to(weight.dtype))
                self.merged_adapters.remove(name)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.disabled:
            if self.merged_adapters:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        rows = _ROWS.get()
        if rows is not None:
            return self._mixed(x, result, rows)
        dtype = result.dtype
        for name in self.active_adapters:
            if name not in self.lora_A or name in self.merged_adapters:
                continue
            a, b = self.lora_A[name], self.lora_B[name]
            h = x if x.dtype == a.weight.dtype else x.to(a.weight.dtype)  # (as `peft`)
            t = a(self.lora_dropout[name](h))
            if type(b) is nn.Linear and b.bias is None and result.dtype == t.dtype:
                # `result + (t * scaling) B^T` as one addmm: the scaling on the rank-r
                # columns and the sum in the product's accumulate, where `peft`'s
                # `result + B(t) * scaling` makes two more passes over [tokens, out] and
                # the scaling's backward a third (measured: ~0.12 s of a 124M step on 2 cores).
                t2 = (t * self.scaling[name]).reshape(-1, t.shape[-1])
                out2 = result.reshape(-1, result.shape[-1])
                result = torch.addmm(out2, t2, b.weight.t()).view(result.shape)
            else:
                result = result + b(t) * self.scaling[name]
        return result.to(dtype)

    def _mixed(self, x: torch.Tensor, result: torch.Tensor, rows: tuple[str, ...]) -> torch.Tensor:
        """Each row's own adapter. Inference: the batch's adapters' `A`s stacked into one
        `[R, in]` matrix (R: their ranks summed) and their `B * scaling` into one
        `[out, R]`, so every row's update is `((x @ A_cat^T) * mask) @ B_cat^T` with
        `mask` keeping only the row's own adapter's columns: three ops per layer however
        many adapters share the batch, reading each adapter's weights once (the concat
        form of punica's BGMV; the per-row gathered `bmm` it replaces read a copy of an
        adapter per row and cost more than the base product at 16 rows). Training (or
        autograd on): per adapter, on its rows, with its dropout."""
        names = self._check_rows(x, rows)
        if not names:
            return result
        dropout = any(not isinstance(self.lora_dropout[n], nn.Identity) for n in names)
        if (dropout and self.training) or torch.is_grad_enabled():
            return self._mixed_by_group(x, result, rows, list(names))
        a_cat, b_cat_t, mask, _, _ = self.mixed_plan(x, rows)  # type: ignore[misc]
        x2 = x.reshape(-1, x.shape[-1])
        x2 = x2 if x2.dtype == a_cat.dtype else x2.to(a_cat.dtype)
        h = torch.mm(x2, a_cat.t())  # [rows * T, R]
        h = (h.view(x.shape[0], -1, h.shape[-1]) * mask).view(h.shape)  # (own columns only)
        out2 = result.reshape(-1, result.shape[-1])
        if out2.dtype == h.dtype:
            return torch.addmm(out2, h, b_cat_t).view(result.shape)
        return (out2 + torch.mm(h, b_cat_t).to(out2.dtype)).view(result.shape)

    def _check_rows(self, x: torch.Tensor, rows: tuple[str, ...]) -> tuple[str, ...]:
        """The adapters of this layer the rows take (cached per rows); errors for merged
        adapters, a row count that is not the batch's, an adapter the model lacks."""
        if self.merged_adapters:
            raise ValueError(
                "mixed_batch with merged adapters: a merged update applies to every row; "
                "unmerge_adapter() first"
            )
        if len(rows) != x.shape[0]:
            raise ValueError(
                f"mixed_batch got {len(rows)} adapter names for a batch of {x.shape[0]} rows; "
                "pass one per row"
            )
        plan = self.__dict__.get("_gpt2kit_rows")
        if plan is None or plan[0] != rows:
            plan = (rows, self._batch_names(rows), None, None)
            self.__dict__["_gpt2kit_rows"] = plan
        return plan[1]

    def mixed_plan(
        self, x: torch.Tensor, rows: tuple[str, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """What a mixed batch's inference update reads, for `rows` (one adapter name per
        row of `x`): `(A_cat [R, in], (B * scaling)_cat^T [R, out], mask [rows, 1, R],
        lo, hi)` (`lo[i]:hi[i]`, int32: row `i`'s columns of the stacks, empty without an
        adapter here), or None when no row takes an adapter of this layer. Kept while the
        rows and the weights stay (consecutive decoding steps); the CPU decoder reads it
        too (its kernel computes only each row's own columns)."""
        names = self._check_rows(x, rows)
        if not names:
            return None
        a_cat, b_cat_t, columns = self._stacks(names, x.device)
        plan = self.__dict__["_gpt2kit_rows"]
        if plan[2] is not a_cat:  # (new rows, or the stacks were rebuilt)
            plan = (rows, names, a_cat, (a_cat, b_cat_t, *self._spans(rows, columns, a_cat)))
            self.__dict__["_gpt2kit_rows"] = plan
        return plan[3]

    def _batch_names(self, rows: tuple[str, ...]) -> tuple[str, ...]:
        """The adapters of this layer the batch's rows take, in the layer's order; an
        adapter name the model does not have at all is an error."""
        wanted = set(rows)
        for name in wanted:
            if name != BASE and name not in self.lora_A and name not in self.known_elsewhere:
                raise ValueError(
                    f"mixed_batch names adapter {name!r}, which the model does not have"
                )
        return tuple(n for n in self.lora_A if n in wanted)

    def _stacks(
        self, names: tuple[str, ...], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[int, int]]]:
        """`A_cat [R, in]`, `(B * scaling)_cat^T [R, out]` of `names` and each one's
        columns `(lo, hi)`: kept until the set of adapters in the batch or one of their
        weights changes (requests joining or leaving with adapters already there only
        change the rows' spans, `_spans`)."""
        weights = [(self.lora_A[n].weight, self.lora_B[n].weight) for n in names]
        key = (names, device)
        key += tuple((a.data_ptr(), a._version, b.data_ptr(), b._version) for a, b in weights)
        cached = self.__dict__.get("_gpt2kit_stacks")
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.no_grad():
            a_cat = torch.cat([a.detach() for a, _ in weights], 0).to(device).contiguous()
            scaled = [(b.detach() * self.scaling[n]).t() for n, (_, b) in zip(names, weights)]
            b_cat_t = torch.cat(scaled, 0).to(device).contiguous()
        columns, start = {}, 0
        for n in names:
            columns[n] = (start, start + self.r[n])
            start += self.r[n]
        self.__dict__["_gpt2kit_stacks"] = (key, (a_cat, b_cat_t, columns))
        return a_cat, b_cat_t, columns

    @staticmethod
    def _spans(
        rows: tuple[str, ...], columns: dict[str, tuple[int, int]], a_cat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row's columns of the stacks as `mask [rows, 1, R]` (1 on the row's own
        adapter's columns, 0 elsewhere and for rows without an adapter here) and as int32
        `lo`, `hi` (CPU, what the native kernel reads)."""
        spans = [columns.get(n, (0, 0)) for n in rows]
        lo_hi = torch.tensor(spans, dtype=torch.int32).t().contiguous()
        lo, hi = lo_hi[0], lo_hi[1]
        r = torch.arange(a_cat.shape[0])
        mask = (r >= lo[:, None]) & (r < hi[:, None])
        return mask.to(device=a_cat.device, dtype=a_cat.dtype).unsqueeze(1), lo, hi

    def _mixed_by_group(
        self, x: torch.Tensor, result: torch.Tensor, rows: tuple[str, ...], names: list[str]
    ) -> torch.Tensor:
        for name, index in _row_groups(rows, x.shape[0], x.device).items():
            if name not in names:
                continue
            a = self.lora_A[name]
            sub = x.index_select(0, index)
            sub = sub if sub.dtype == a.weight.dtype else sub.to(a.weight.dtype)
            delta = self.lora_B[name](a(self.lora_dropout[name](sub))) * self.scaling[name]
            result = result.index_add(0, index, delta.to(result.dtype))
        return result

    # every adapter name of the model (set by `inject`): one that skips this layer is fine
    known_elsewhere: frozenset[str] = frozenset()

    def extra_repr(self) -> str:
        ranks = ", ".join(f"{n}: r={r}" for n, r in self.r.items())
        return f"adapters=[{ranks}], active={self.active_adapters}, merged={self.merged_adapters}"


class ModulesToSave(nn.Module):
    """A module trained in full beside an adapter: `modules_to_save[name]` is the adapter's
    own copy, `original_module` the base model's. The active adapter's copy runs; with
    adapters disabled, or an active adapter that has no copy here, the original runs.

    Attributes other than these (e.g. `out_features`, `weight`) read through to the module
    that would run, so code that inspects the head still works.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.original_module = module
        self.modules_to_save = nn.ModuleDict()
        self.active_adapters: list[str] = []
        self.disabled = False

    def add(self, name: str, trainable: bool) -> None:
        original = self.original_module
        if is_quantized_linear(original):
            # (a quantized head trains in full as a float copy of its dequantized weight,
            # which is also what the adapter file holds: `score.weight`, as `peft` writes)
            duplicate: nn.Module = nn.Linear(
                original.in_features, original.out_features,
                bias=original.bias is not None, **_float_kind(original),
            )  # fmt: skip
            with torch.no_grad():
                duplicate.weight.copy_(original.dequantize(dtype=duplicate.weight.dtype))
                if original.bias is not None:
                    duplicate.bias.copy_(original.bias)
        else:
            duplicate = copy.deepcopy(original)
        duplicate.requires_grad_(trainable)
        self.modules_to_save[name] = duplicate

    def remove(self, name: str) -> None:
        if name in self.modules_to_save:
            del self.modules_to_save[name]
        if name in self.active_adapters:
            self.active_adapters.remove(name)

    def current(self) -> nn.Module:
        """The module a call runs now."""
        if not self.disabled:
            for name in self.active_adapters[:1]:  # (`peft`: the first active adapter)
                if name in self.modules_to_save:
                    return self.modules_to_save[name]
        return self.original_module

    def _module_for(self, name: str) -> nn.Module:
        if name in self.modules_to_save:
            return self.modules_to_save[name]
        return self.original_module  # (`__base__`, or an adapter without a copy here)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        rows = _ROWS.get()
        if rows is None or self.disabled or not args or not torch.is_tensor(args[0]):
            return self.current()(*args, **kwargs)
        x = args[0]
        groups = _row_groups(rows, x.shape[0], x.device)
        if len(groups) == 1:
            (name,) = groups
            return self._module_for(name)(*args, **kwargs)
        out = None
        batch = x.shape[0]

        def rows_of(value: Any, index: torch.Tensor) -> Any:  # (per-row extras: `cls_index`)
            if torch.is_tensor(value) and value.dim() and value.shape[0] == batch:
                return value.index_select(0, index)
            return value

        for name, index in groups.items():
            part = self._module_for(name)(
                *(rows_of(a, index) for a in args),
                **{k: rows_of(v, index) for k, v in kwargs.items()},
            )
            if out is None:
                out = part.new_empty((x.shape[0], *part.shape[1:]))
            out = out.index_copy(0, index, part)
        return out

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if (
                name in ("original_module", "modules_to_save", "_modules")
                or "_modules" not in self.__dict__
            ):
                raise
            return getattr(self.current(), name)
