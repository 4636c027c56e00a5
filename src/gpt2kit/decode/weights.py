"""The decoder's copies of a model's projection weights, laid out for the products it runs.

The model's parameters are never moved, rebound or re-laid-out: `torch.save`, `state_dict()`,
optimizers and DDP always see ordinary tensors with storage of their own. What decoding
reads faster lives here, beside them, per model (`decode/decoder.py` keeps one
`DecodeWeights` per model in a weak-keyed table, so it goes with the model):

- `arena`: with the native kernel and batches of up to `native.MAX_FP32_ROWS` rows (fp32
  or bf16): a copy of every projection weight and the (tied) LM head in one buffer, in the
  order a step reads them, on 2 MiB pages where Linux allows (`native.huge_page_empty`:
  ~1.045x tokens/s at batch 1). Cost: a second copy of those weights, 124M params (~0.50
  GB) for GPT-2 small in fp32, half that in bf16.
- `column`: without the kernel, batch 1, fp32: the widening weights (`c_attn`, `c_fc`, the
  LM head) copied column-major, which BLAS multiplies fastest as `x @ W.T` (measured on a
  2-core EPYC: 0.54 vs 0.67 ms for `c_attn`, 9.7 vs 14.2 ms for the LM head). Cost: a
  copy of those weights (~0.43 GB for 124M fp32).
- `packed`: fp32 batches the kernel does not take (more rows, or no kernel): oneDNN-packed
  copies (`decode/packed.py`, ~0.45 GB for 124M).

Every copy remembers the parameter object it copies and that parameter's address and
version (`Tensor._version`, bumped by every in-place update: an optimizer step,
`load_state_dict`, `with torch.no_grad(): w.mul_(2)`). `sync` compares them before each
decoder call and copies a changed weight again, so weights trained or loaded between
`generate` calls are read, never stale copies; a replaced parameter or module rebuilds
the copies. `gpt2kit.decode.release(model)` frees them at once.
"""

from __future__ import annotations

import logging
import threading

import torch
from torch import nn

from .. import native
from . import packed
from .plan import LINEAR_TYPES, decode_modules

logger = logging.getLogger("gpt2kit")


def projection_weights(model: nn.Module) -> list[nn.Parameter]:
    """Every weight of a projection the decoder stands in for, once (the tied LM head is the
    token embedding), in module order: the order a decoding step reads them."""
    seen: dict[int, nn.Parameter] = {}
    for module in decode_modules(model):
        weight = getattr(module, "weight", None)
        if type(module) in LINEAR_TYPES and type(weight) is nn.Parameter and weight.dim() == 2:
            seen.setdefault(id(weight), weight)  # (sharded DTensor weights stay as they are)
    return list(seen.values())


def _selected(weights: list[nn.Parameter], kind: str | None) -> list[nn.Parameter]:
    """The weights a copy of `kind` holds: on CPU, of the first one's dtype; for "column"
    only the widening ones (a narrowing one, `mlp.c_proj` 3072 -> 768, multiplies faster
    row-major: 0.66 vs 0.91 ms, and is read as is)."""
    if kind is None or not weights:
        return []
    dtype = weights[0].dtype
    kept = [w for w in weights if w.device.type == "cpu" and w.dtype == dtype]
    return [w for w in kept if w.shape[0] > w.shape[1]] if kind == "column" else kept


def _stamp(weight: torch.Tensor) -> tuple[int, int]:
    return weight.data_ptr(), weight._version


class DecodeWeights:
    """One model's decode-time weight copies (`kind`: "arena", "column" or None), its
    packed weights and the batch-1 step's plan; see the module docstring."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.kind: str | None = None
        # id(parameter) -> (parameter, copy); the parameter is kept so its id stays unique
        self.copies: dict[int, tuple[nn.Parameter, torch.Tensor]] = {}
        self.views: dict[int, torch.Tensor] = {}  # id(parameter) -> copy (what the plan reads)
        self.sources: list[nn.Parameter] = []  # the parameters copied, in order ...
        self.stamps: list[tuple[int, int]] = []  # ... and their (address, version) then
        self.arena: torch.Tensor | None = None
        self.packed: dict[int, tuple[nn.Parameter, packed.PackedWeight]] = {}
        self.home: dict = {}  # the batch-1 step's plan (`plan.lm_step`)
        self.users = 0  # decoder calls running now (threads share one model)
        self.installed: list[nn.Module] = []

    # -- what is held -----------------------------------------------------------------------
    def nbytes(self) -> int:
        """Bytes held beside the model's own weights (the packed copies estimated as the
        weights they pack)."""
        total = self.arena.numel() * self.arena.element_size() if self.arena is not None else 0
        if self.kind == "column":
            total += sum(c.numel() * c.element_size() for _, c in self.copies.values())
        total += sum(w.numel() * w.element_size() for w, _ in self.packed.values())
        return total

    # -- building ---------------------------------------------------------------------------
    def prepare(self, model: nn.Module, rows: int, kernel: bool) -> None:
        """Make the copies `rows`-row decoding reads fastest (kept from earlier calls when
        still current)."""
        weights = projection_weights(model)
        if not weights:
            return
        dtype = weights[0].dtype
        fp32 = dtype == torch.float32
        native_rows = kernel and rows <= native.MAX_FP32_ROWS
        if native_rows:
            kind = "arena"
        elif rows == 1 and fp32:  # (no kernel; bf16 products of that layout are 10x slower)
            kind = "column"
        else:
            kind = self.kind if self.kind == "arena" else None  # (an arena serves few rows later)
        with self.lock:
            if kind != self.kind:
                if kind is not None:
                    self.packed.clear()  # (as a batch-1 call did: one extra copy at a time)
                self._build(weights, kind)
            else:
                self.sync(weights)
            if rows > 1 and not native_rows and fp32:
                self._pack(weights, rows)

    def _build(self, weights: list[nn.Parameter], kind: str | None) -> None:
        self.kind, self.arena = kind, None
        self.copies, self.views = {}, {}
        self.sources, self.stamps = [], []
        self.home.clear()
        weights = _selected(weights, kind)
        if not weights:
            return
        # Normal tensors even when built under `torch.inference_mode()` (inference tensors
        # cannot be written outside it, and the next call may copy into them).
        with torch.inference_mode(False), torch.no_grad():
            if kind == "arena":
                total = sum(w.numel() for w in weights)
                self.arena = native.huge_page_empty(total, weights[0].dtype)
                offset = 0
                for w in weights:
                    view = self.arena[offset : offset + w.numel()].view(w.shape)
                    view.copy_(w.detach())
                    self._keep(w, view)
                    offset += w.numel()
            else:
                for w in weights:
                    self._keep(w, w.detach().t().contiguous().t())

    def _keep(self, weight: nn.Parameter, copy: torch.Tensor) -> None:
        self.copies[id(weight)] = (weight, copy)
        self.views[id(weight)] = copy
        self.sources.append(weight)
        self.stamps.append(_stamp(weight))

    def _pack(self, weights: list[nn.Parameter], rows: int) -> None:
        if not packed.packing_available():
            return
        try:
            kept = {}
            for w in weights:
                if w.device.type != "cpu" or w.dtype != torch.float32:
                    continue
                entry = self.packed.get(id(w))
                if entry is None or entry[0] is not w or not entry[1].valid_for(w):
                    entry = (w, packed.PackedWeight(w, rows))
                kept[id(w)] = entry
            self.packed = kept
        except RuntimeError as err:  # a build whose oneDNN ops refuse: plain products
            logger.warning("oneDNN weight packing unavailable (%s); using plain products", err)
            packed.mark_unavailable()
            self.packed = {}

    # -- keeping them current ---------------------------------------------------------------
    def fresh(self) -> bool:
        """Whether every copied parameter still has the address and version it was copied at."""
        return list(map(_stamp, self.sources)) == self.stamps

    def sync(self, weights: list[nn.Parameter] | None = None) -> None:
        """Copy again what changed since it was copied; with the model's current projection
        `weights`, rebuild when they are other parameters than those copied."""
        with self.lock:
            if self.kind is None:
                return
            if weights is not None:
                current = _selected(weights, self.kind)
                if list(map(id, current)) != list(map(id, self.sources)):
                    self._build(weights, self.kind)
                    return
            if self.fresh():
                return
            with torch.inference_mode(False), torch.no_grad():
                for i, w in enumerate(self.sources):
                    stamp = _stamp(w)
                    if stamp == self.stamps[i]:
                        continue
                    copy = self.copies[id(w)][1]
                    if w.shape != copy.shape or w.dtype != copy.dtype or w.device.type != "cpu":
                        self._build(weights or self.sources, self.kind)  # (`.data =` reshaped)
                        return
                    copy.copy_(w.detach())
                    self.stamps[i] = stamp

    def copy_of(self, weight: torch.Tensor) -> torch.Tensor | None:
        """The decoder's copy of `weight` (None: read the parameter itself)."""
        entry = self.copies.get(id(weight))
        return entry[1] if entry is not None and entry[0] is weight else None

    def packed_for(self, weight: torch.Tensor) -> packed.PackedWeight | None:
        entry = self.packed.get(id(weight))
        if entry is None or entry[0] is not weight or not entry[1].valid_for(weight):
            return None
        return entry[1]
