"""Fixed-shape decode step, compiled once and replayed: `cache_implementation="static"`.

Why. A dynamic decode step changes shape every token (the cache slice grows by one), so
it cannot be captured once. With a `StaticKVCache` the step

    step(input_ids [N, 1], position_ids [N, 1], cache_position [1], valid [N, C])
        -> logits [N, V]

has the same shapes at every token and no Python branch that depends on the step: the
new key/value is written at the *tensor* `cache_position`, and attention runs over all
`C` (capacity) positions under a boolean mask of those written so far (and not padding).
So it compiles with `fullgraph=True`, and on CUDA the decoder records the compiled step
as one CUDA graph over its own input buffers and replays it each token, removing the
per-kernel launch overhead that dominates small-batch decoding on a GPU (measured, 124M
bf16 batch 1 on an H200: ~10x the eager loop; see benchmarks/README.md). On CPU,
inductor fuses the small element-wise ops (layer norms, GELU, residual adds, the cache
writes); with `compile_config={"options": {"freezing": True}}` it also constant-folds the
weights and runs the projections through oneDNN with pre-packed weights.

Options (`GenerationConfig` fields, or per call as `generate(..., cache_implementation=
"static")`; the names are `transformers`' ones):

- `cache_implementation`: `None` / `"dynamic"` (default, the growing `KVCache`) or
  `"static"` (this module).
- `compile_config`: a dict of `torch.compile` arguments (`backend`, `mode`, `fullgraph`,
  `dynamic`, `options`), or `transformers`' `CompileConfig`. Defaults: inductor,
  `fullgraph=True`, `dynamic=False`; on CUDA the graph is recorded by the decoder
  (`captures_graph`) unless the options ask for torch's CUDA-graph trees
  (`mode="reduce-overhead"` / `"max-autotune"`) or for none
  (`options={"triton.cudagraphs": False}`). A
  `backend="eager"` compile traces the step with dynamo but runs it unoptimized (fast to
  build: the tests use it). Not written to `generation_config.json` (as `transformers`).
- `disable_compile=True`: the static cache with the step run eagerly (no `torch.compile`).

Unlike `transformers`, "static" compiles on CPU too (that is what it is for here).

Reuse. The compiled step and its cache buffers are kept on the model (at most
`MAX_DECODERS` of them, least recently used dropped first), keyed by (rows, capacity,
dtype, device, compile options): the capacity is prompt + new tokens rounded up to a
multiple of `CAPACITY_BUCKET` (capped at `n_positions`), so calls with different prompt
and output lengths in one bucket reuse one compiled step with no recompilation; a new
bucket or batch size compiles once more. Each entry has its own copy of the step's code
object, so dynamo's per-function recompile limit never makes one entry fall back to
eager because of the others. `release_static_decoders(model)` frees them all. With
`freezing` the weights are baked into the compiled code: the entry is rebuilt when any
parameter changed (training step, `load_state_dict`) since it was compiled; a recorded
CUDA graph is re-recorded when any weight moved to another address (`.to()`, replaced
parameters), since it reads them where they were.

Scope. Greedy and sampling, any batch size, left/right padding; the logits processors,
stopping rules and streaming run outside the compiled step, exactly as on the dynamic
path, so the ids are the same (the tests check it). Beam search falls back to the dynamic
path (it reorders the cache every step; a note is logged). Models with cross-attention
(`encoder_hidden_states`) raise a `ValueError`. The prefill runs eagerly into the static
cache (its shape differs per prompt; compiling it would recompile per prompt length).
"""

from __future__ import annotations

import logging
import types
from typing import Any

import torch
from torch import nn

from ..nn.backbone import GPT2Model
from ..nn.cache import KVCache, StaticKVCache
from ..nn.outputs import CausalLMOutput
from .config import GenerationConfig

logger = logging.getLogger("gpt2kit")

CAPACITY_BUCKET = 128
MAX_DECODERS = 4
CACHE_IMPLEMENTATIONS = (None, "dynamic", "static")
_COMPILE_KEYS = ("backend", "mode", "fullgraph", "dynamic", "options")
_ATTR = "_gpt2kit_static_decoders"


def static_capacity(total: int, n_positions: int) -> int:
    """Cache positions for `total` tokens: rounded up to `CAPACITY_BUCKET`, at most `n_positions`.

    (A longer generation with `context_overflow="slide"` never holds more than
    `n_positions` positions at once.)
    """
    return min(-(-total // CAPACITY_BUCKET) * CAPACITY_BUCKET, n_positions)


def _decode_step(
    backbone: GPT2Model,
    lm_head: nn.Module,
    cache: StaticKVCache,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    cache_position: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """One token per row through every block; logits of that token `[N, V]`.

    `GPT2Model.forward` without what cannot be traced into one graph (its input checks
    read tensor values; its mask and position logic depends on the step in Python).
    `valid [N, C]` marks the cache positions each row attends to.
    """
    attn_mask = valid[:, None, None, :]
    x = backbone.drop(backbone.wte(input_ids) + backbone.wpe(position_ids))
    step_cache = cache.at(cache_position)
    for block in backbone.h:
        x = block(x, attn_mask, step_cache)[0]
    return lm_head(backbone.ln_f(x))[:, -1]


def _fresh_step() -> Any:
    # A copy of the step with its own code object: dynamo keeps compiled entries (and
    # counts recompilations) per code object, so each decoder gets its own.
    fn = _decode_step
    return types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )


def compile_kwargs(cfg: GenerationConfig, device: torch.device) -> dict[str, Any] | None:
    """`torch.compile` arguments for this call (None: run the static step eagerly)."""
    if cfg.disable_compile:
        return None
    given = cfg.compile_config
    if given is None:
        given = {}
    elif not isinstance(given, dict):
        if not hasattr(given, "to_dict"):
            raise ValueError(
                f"compile_config must be a dict of torch.compile arguments ({', '.join(_COMPILE_KEYS)}) "
                f"or a transformers CompileConfig, got {type(given).__name__}"
            )
        given = {k: v for k, v in given.to_dict().items() if k in _COMPILE_KEYS}
    unknown = sorted(set(given) - set(_COMPILE_KEYS))
    if unknown:
        raise ValueError(
            f"compile_config has unknown key(s) {', '.join(unknown)}; valid keys: "
            f"{', '.join(_COMPILE_KEYS)} (inductor settings such as freezing go in 'options')"
        )
    out: dict[str, Any] = {"backend": "inductor", "fullgraph": True, "dynamic": False}
    out.update({k: v for k, v in given.items() if v is not None or k == "mode"})
    return out


_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that bring CUDA graphs


def _torch_graphs(options: dict[str, Any] | None) -> bool | None:
    """True: the options ask for torch's CUDA-graph trees; False: for no graphs; None: silent."""
    if options is None:
        return False
    if options.get("mode") in _GRAPH_MODES:
        return True
    return (options.get("options") or {}).get("triton.cudagraphs")


def captures_graph(options: dict[str, Any] | None, device: torch.device) -> bool:
    """Whether the decoder records the compiled step as one CUDA graph itself.

    On CUDA, unless the options speak about graphs: `mode="reduce-overhead"` or
    `"max-autotune"` (or `options={"triton.cudagraphs": True}`) ask for torch's own
    CUDA-graph trees instead, which check every captured input's address at every replay;
    `options={"triton.cudagraphs": False}` for no graph at all. Any other mode
    (`"max-autotune-no-cudagraphs"`: autotuned kernels) is recorded by the decoder.
    """
    return options is not None and device.type == "cuda" and _torch_graphs(options) is None


def _freezing(options: dict[str, Any] | None) -> bool:
    return bool(options and (options.get("options") or {}).get("freezing"))


def _weights_fingerprint(model: nn.Module) -> tuple[tuple[int, int], ...]:
    # Buffers too: a quantized model's weights are buffers (`qweight`, `weight_scale`).
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def _logits_weight(model: nn.Module) -> torch.Tensor:
    """A tensor with the logits' dtype and device: the LM head's weight, or, for a quantized
    head (integer buffers, no float `.weight`), the final layer norm's."""
    weight = getattr(model.lm_head, "weight", None)
    return weight if isinstance(weight, torch.Tensor) else model.transformer.ln_f.weight


def _weight_addresses(model: nn.Module) -> tuple[int, ...]:
    return tuple(t.data_ptr() for t in (*model.parameters(), *model.buffers()))


class StaticDecoder:
    """Stands in for the model inside the greedy/sampling loop (`decode_steps`).

    The first call after `begin()` is the prefill: the real model, eager, writing into
    the `StaticKVCache`. Every later call is one token per row through the (compiled)
    fixed-shape step. Called with the model's keyword arguments; returns an output with
    `.logits [N, 1, V]`. `fixed_batch` tells the loop not to drop finished rows (that
    would change the step's shape).
    """

    fixed_batch = True

    def __init__(
        self, model: nn.Module, batch: int, capacity: int, options: dict[str, Any] | None
    ) -> None:
        cfg = model.config
        weight = _logits_weight(model)
        self.model, self.config = model, cfg
        self.batch, self.capacity = batch, capacity
        self.device = weight.device
        self.cache = StaticKVCache(
            cfg.n_layer, batch, cfg.n_head, cfg.head_dim, capacity, weight.dtype, weight.device
        )
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool, device=self.device)
        self.cache_position = torch.zeros(1, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        for buffer in (self.valid, self.cache_position, self.positions):
            # Updated in place between replays: a captured graph reads them where they
            # are instead of copying them in (as the cache buffers).
            torch._dynamo.mark_static_address(buffer)
        self.options = options
        self.frozen = _freezing(options)
        self.fingerprint = _weights_fingerprint(model)
        self.addresses = _weight_addresses(model)
        step = _fresh_step()
        self.step = torch.compile(step, **options) if options is not None else step
        # A CUDA graph recorded by this decoder (`_replay`), or torch's CUDA-graph trees
        # when the compile options ask for them (`mode="reduce-overhead"`).
        self.capture = captures_graph(options, self.device)
        self.cuda_graphs = self.device.type == "cuda" and bool(_torch_graphs(options))
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_ids = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        self.graph_logits: torch.Tensor | None = None
        self.cur = 0

    def stale(self, model: nn.Module) -> bool:
        """Whether weights this decoder baked in (freezing) or recorded (graph) changed."""
        if self.frozen and self.fingerprint != _weights_fingerprint(model):
            return True  # constant-folded weights are stale
        # A recorded graph reads the weights at their addresses: moved weights (`.to`,
        # replaced parameters) would be read from freed memory.
        return self.graph is not None and self.addresses != _weight_addresses(model)

    def begin(self) -> StaticDecoder:
        """Start a new generation (the next call is a prefill)."""
        self.cur = 0
        return self

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = True,
        logits_to_keep: int = 1,
        **extra: Any,
    ) -> CausalLMOutput:
        """One call of the loop: a prefill when nothing is cached, else one decode step.

        "Cached" is the length of the caller's `past_key_values` when it passes one (the
        loop's own `KVCache`, which this decoder advances in step with its static cache
        and which the loop crops to 0 to re-encode a sliding window), else the count of
        positions this decoder wrote since `begin()`.
        """
        if extra:
            raise ValueError(
                f"cache_implementation='static' does not take {', '.join(sorted(extra))}; "
                "use the dynamic cache (cache_implementation=None)"
            )
        rows, t = input_ids.shape
        if rows != self.batch:
            raise ValueError(
                f"the static decoder was built for {self.batch} rows, got {rows}; rows cannot be "
                "dropped or added mid-generation with cache_implementation='static'"
            )
        tracked = isinstance(past_key_values, KVCache)
        cached = past_key_values.length if tracked else self.cur
        if cached == 0:
            out = self._prefill(input_ids, attention_mask, position_ids)
        else:
            out = self._step(input_ids, attention_mask, position_ids, cached)
        self.cur = cached + t
        if tracked:
            past_key_values.advance(t)
        return out

    def _step(self, input_ids, attention_mask, position_ids, cur: int) -> CausalLMOutput:
        if input_ids.shape[1] != 1 or cur >= self.capacity:
            raise ValueError(
                f"a static decode step takes one token per row within {self.capacity} "
                f"positions; got {input_ids.shape[1]} tokens at position {cur}"
            )
        if attention_mask is not None and attention_mask.shape[1] != cur + 1:
            raise ValueError(
                f"attention_mask covers {attention_mask.shape[1]} positions, expected "
                f"{cur + 1} (cached + this token)"
            )
        self.valid[:, cur] = True
        self.cache_position.fill_(cur)
        if self.capture:
            if position_ids is not None:
                self.positions.copy_(position_ids)
            self.graph_ids.copy_(input_ids)
            logits = self._replay()
        else:
            if position_ids is None:
                position_ids = self.positions
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            logits = self._run(input_ids, position_ids)
            if self.cuda_graphs:  # the next replay overwrites the graph's output buffer
                logits = logits.clone()
        self.positions.add_(1)
        self.cache.length = cur + 1
        return CausalLMOutput(logits=logits[:, None], past_key_values=self.cache)

    def _run(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        args = (
            self.model.transformer,
            self.model.lm_head,
            self.cache,
            input_ids,
            position_ids,
            self.cache_position,
            self.valid,
        )
        if not self.frozen:
            return self.step(*args)
        # `torch.compile(options={"freezing": True})` alone does not freeze: the flag is
        # read while dynamo/AOT trace, outside the options' scope. Scope it around the
        # call that compiles (and any recompile); a no-op cost otherwise.
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):
            return self.step(*args)

    def _replay(self) -> torch.Tensor:
        """The compiled step as one CUDA graph over this decoder's own input buffers.

        Recorded at the first step: two warm-up runs on a side stream compile the step
        (and let inductor pick its kernels) outside the capture, then one run is
        recorded. Each only rewrites this step's cache position with the same values,
        so the warm-ups change nothing. Replaying costs one launch; the returned logits
        are copied out of the graph's buffer, which the next replay overwrites.
        """
        if self.graph is None:
            with torch.cuda.device(self.device):  # (the model's GPU may not be the current one)
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):
                        self._run(self.graph_ids, self.positions)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self.graph_logits = self._run(self.graph_ids, self.positions)
            self.graph = graph
        with torch.cuda.device(self.device):
            self.graph.replay()
        return self.graph_logits.clone()  # type: ignore[union-attr]

    def _prefill(self, input_ids, attention_mask, position_ids) -> CausalLMOutput:
        t = input_ids.shape[1]
        if t >= self.capacity:
            raise ValueError(f"prompt of {t} tokens leaves no room in {self.capacity} positions")
        self.cache.reset()
        self.valid.zero_()
        if attention_mask is None:
            self.valid[:, :t] = True
            self.positions.fill_(t)  # position of each row's first new token
        else:
            self.valid[:, :t] = attention_mask.bool()
            self.positions.copy_(attention_mask.long().sum(1, keepdim=True))
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )


class _Decoders(dict):
    """Per-model store of `StaticDecoder`s; dropped (not copied) by `deepcopy` and pickling."""

    def __deepcopy__(self, memo: dict) -> _Decoders:
        return _Decoders()

    def __reduce__(self) -> tuple:
        return (_Decoders, ())


def _options_key(options: dict[str, Any] | None) -> Any:
    if options is None:
        return None
    return tuple(
        (
            k,
            repr(sorted(v.items()))
            if isinstance(v, dict)
            else (v if isinstance(v, str) else id(v)),
        )
        for k, v in sorted(options.items())
    )


def release_static_decoders(model: nn.Module) -> None:
    """Free the compiled steps and static caches `generate` keeps on `model`."""
    model.__dict__.pop(_ATTR, None)


def static_decoder(
    model: nn.Module, cfg: GenerationConfig, batch: int, total: int
) -> StaticDecoder:
    """The model's decoder for `batch` rows and `total` tokens (built and compiled on first use)."""
    if not isinstance(getattr(model, "transformer", None), GPT2Model) or not isinstance(
        getattr(model, "lm_head", None), nn.Module
    ):
        raise ValueError(
            f"cache_implementation='static' needs a GPT-2 LM (a `transformer` backbone and an "
            f"`lm_head`); {type(model).__name__} has not: use cache_implementation=None"
        )
    if model.config.add_cross_attention:
        raise ValueError(
            "cache_implementation='static' does not support cross-attention models "
            "(encoder_hidden_states); use cache_implementation=None"
        )
    weight = _logits_weight(model)
    options = compile_kwargs(cfg, weight.device)
    capacity = static_capacity(total, model.config.n_positions)
    key = (batch, capacity, weight.dtype, str(weight.device), _options_key(options))
    store = model.__dict__.get(_ATTR)
    if store is None:
        store = model.__dict__[_ATTR] = _Decoders()
    decoder = store.pop(key, None)
    if decoder is not None and decoder.stale(model):
        decoder = None
    if decoder is None:
        decoder = StaticDecoder(model, batch, capacity, options)
    store[key] = decoder  # most recently used last
    while len(store) > MAX_DECODERS:
        store.pop(next(iter(store)))
    return decoder.begin()


def select_decoder(
    model: Any, cfg: GenerationConfig, batch: int, total: int, beams: bool, extra: dict[str, Any]
) -> Any:
    """What `generate`'s loop calls: `model` itself, or its `StaticDecoder` for `cache_implementation="static"`."""
    impl = cfg.cache_implementation
    if impl not in CACHE_IMPLEMENTATIONS:
        raise ValueError(f"cache_implementation must be None, 'dynamic' or 'static', got {impl!r}")
    if impl != "static":
        return model
    if extra:
        raise ValueError(
            "cache_implementation='static' does not support encoder_hidden_states "
            "(cross-attention); use cache_implementation=None"
        )
    if beams:
        logger.info("cache_implementation='static': beam search runs on the dynamic cache")
        return model
    return static_decoder(model, cfg, batch, total)
