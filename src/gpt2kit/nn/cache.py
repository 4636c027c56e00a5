"""`KVCache`: the one key/value cache type of every gpt2kit model.

Keys and values of each layer live in one buffer `[B, H, capacity, hs]` that is written
in place, so decoding appends without allocating; when `capacity` is known up front
(generation knows prompt + max_new_tokens) the buffer is allocated once. Without a
capacity it grows by doubling, so a caller that just passes `use_cache=True` pays
amortized O(1) per token instead of a concatenation per step.

Cross-attention keys/values (encoder-decoder models) are computed from the encoder
output once and kept in `cross`.

The legacy format (`transformers` < 4.36, and what many users still hold) is a tuple with
one `(key, value)` pair per layer, each `[B, H, T, hs]`; cross-attention models append
`(cross_key, cross_value)` to each layer's tuple. `from_legacy` / `to_legacy` convert.

`StaticKVCache` is the fixed-shape variant for a compiled decode step
(`cache_implementation="static"`, `gpt2kit.generation.compiled`): buffers allocated once
at a fixed batch and capacity, decode writes at a tensor position, attention reads the
whole capacity under a mask.
"""

from __future__ import annotations

import torch


class KVCache:
    """Preallocated per-layer key/value buffers, filled up to `length` positions.

    Example:
        >>> cache = KVCache(n_layer=2, capacity=16)
        >>> k = v = torch.zeros(1, 4, 3, 8)          # (B, nh, T, hs)
        >>> k_all, v_all = cache.update(0, k, v)
        >>> k_all.shape, cache.length
        (torch.Size([1, 4, 3, 8]), 0)
    """

    def __init__(self, n_layer: int, capacity: int | None = None) -> None:
        self.n_layer = n_layer
        self.capacity = capacity
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer
        # Positions already written for every layer; layer i writes at `length` during a
        # forward and `advance` moves it once all layers are done.
        self.length = 0

    def __len__(self) -> int:
        return self.n_layer

    def get_seq_length(self) -> int:
        return self.length

    def update(
        self, layer: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write `key`/`value` `[B, H, T, hs]` after the cached positions; return all of them."""
        start, end = self.length, self.length + key.shape[2]
        B, H, _, hs = key.shape
        buf_k, buf_v = self.reserve(layer, end, B, H, hs, key)
        buf_k[:, :, start:end] = key
        buf_v[:, :, start:end] = value
        return buf_k[:, :, :end], buf_v[:, :, :end]

    def reserve(
        self, layer: int, end: int, batch: int, heads: int, head_dim: int, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer`'s buffers `[batch, heads, >= end, head_dim]` (dtype and device of
        `like`), grown or made as needed; the cached positions are kept."""
        buf_k = self.keys[layer]
        if buf_k is not None and self.length and buf_k.shape[0] != batch:
            # (new buffers would drop the cached positions and attend to garbage)
            raise ValueError(
                f"the cache holds {buf_k.shape[0]} rows but the input has {batch}: pass a "
                "new cache, or select its rows with `cache.reorder(index)` first"
            )
        if buf_k is None or buf_k.shape[2] < end or buf_k.shape[0] != batch:
            start = self.length
            size = max(end, self.capacity or 0, 2 * (buf_k.shape[2] if buf_k is not None else 0))
            new_k = like.new_empty(batch, heads, size, head_dim)
            new_v = like.new_empty(new_k.shape)
            if buf_k is not None and start and buf_k.shape[0] == batch:
                new_k[:, :, :start] = buf_k[:, :, :start]
                new_v[:, :, :start] = self.values[layer][:, :, :start]  # type: ignore[index]
            self.keys[layer], self.values[layer] = new_k, new_v
        return self.keys[layer], self.values[layer]  # type: ignore[return-value]

    def advance(self, t: int) -> None:
        """Mark `t` more positions as cached (called by the model after all layers ran)."""
        self.length += t

    def crop(self, length: int) -> None:
        """Forget every position from `length` on (e.g. rejected speculative tokens)."""
        self.length = min(self.length, length)

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search): row i becomes old row `index[i]`."""
        for i in range(self.n_layer):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i].index_select(0, index)  # type: ignore[union-attr]
                self.values[i] = self.values[i].index_select(0, index)  # type: ignore[union-attr]
            if self.cross[i] is not None:
                ck, cv = self.cross[i]  # type: ignore[misc]
                self.cross[i] = (ck.index_select(0, index), cv.index_select(0, index))

    @classmethod
    def from_legacy(
        cls, legacy: tuple[tuple[torch.Tensor, ...], ...], capacity: int | None = None
    ) -> KVCache:
        """Build from the tuple-of-`(key, value[, cross_key, cross_value])` format."""
        cache = cls(len(legacy), capacity)
        for i, layer in enumerate(legacy):
            if len(layer) not in (2, 4):
                raise ValueError(
                    f"past_key_values[{i}] has {len(layer)} tensors; expected (key, value) "
                    "or (key, value, cross_key, cross_value)"
                )
            cache.update(i, layer[0], layer[1])
            if len(layer) == 4:
                cache.cross[i] = (layer[2], layer[3])
        cache.length = legacy[0][0].shape[2] if legacy else 0
        return cache

    def to_legacy_cache(self) -> tuple[tuple[torch.Tensor, ...], ...]:
        """`transformers`' name of `to_legacy`."""
        return self.to_legacy()

    def to_legacy(self) -> tuple[tuple[torch.Tensor, ...], ...]:
        out = []
        for i in range(self.n_layer):
            layer: tuple[torch.Tensor, ...] = (
                self.keys[i][:, :, : self.length],  # type: ignore[index]
                self.values[i][:, :, : self.length],  # type: ignore[index]
            )
            if self.cross[i] is not None:
                layer = layer + tuple(self.cross[i])  # type: ignore[arg-type]
            out.append(layer)
        return tuple(out)


class StaticKVCache(KVCache):
    """`KVCache` with buffers allocated once at a fixed batch and capacity, never moved.

    Why: a decode step that always sees the same tensor shapes and addresses can be
    compiled once (`torch.compile(fullgraph=True)`) and, on CUDA, captured as a graph and
    replayed. The dynamic cache cannot give that: it returns a slice that grows by one
    position per step. Here the prefill writes through `update` as `KVCache` does (Python
    position `length`), and a decode step writes through `at(cache_position)`, whose
    position is a *tensor* (`index_copy_` on the position dimension), returning the whole
    `[B, H, capacity, hs]` buffers; the step attends over all of them under a boolean mask
    of the positions written so far (`gpt2kit.generation.compiled` owns that mask).

    The buffers are marked as static addresses so CUDA-graph capture (`mode=
    "reduce-overhead"`) keeps them as persistent inputs instead of copying them each
    replay. `reorder` copies in place (beam search would keep the addresses).

    Example:
        >>> cache = StaticKVCache(2, batch=1, n_head=4, head_dim=8, capacity=16)
        >>> k = v = torch.ones(1, 4, 3, 8)
        >>> cache.update(0, k, v)[0].shape          # prefill: the filled prefix
        torch.Size([1, 4, 3, 8])
        >>> step = cache.at(torch.tensor([3]))      # decode: write at a tensor position
        >>> step.update(0, k[:, :, :1], v[:, :, :1])[0].shape
        torch.Size([1, 4, 16, 8])
    """

    def __init__(
        self,
        n_layer: int,
        batch: int,
        n_head: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(n_layer, capacity)
        self.batch = batch
        shape = (batch, n_head, capacity, head_dim)
        for i in range(n_layer):
            self.keys[i] = torch.zeros(shape, dtype=dtype, device=device)
            self.values[i] = torch.zeros(shape, dtype=dtype, device=device)
            torch._dynamo.mark_static_address(self.keys[i])
            torch._dynamo.mark_static_address(self.values[i])

    def update(
        self, layer: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write `key`/`value` `[B, H, T, hs]` at `length`; return the filled prefix."""
        start, end = self.length, self.length + key.shape[2]
        if end > self.capacity or key.shape[0] != self.batch:  # type: ignore[operator]
            raise ValueError(
                f"StaticKVCache holds batch {self.batch} x {self.capacity} positions; got batch "
                f"{key.shape[0]} writing positions {start}..{end - 1}: build it with the "
                "batch and capacity of the whole generation"
            )
        self.keys[layer][:, :, start:end] = key  # type: ignore[index]
        self.values[layer][:, :, start:end] = value  # type: ignore[index]
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]  # type: ignore[index]

    def write(
        self, layer: int, key: torch.Tensor, value: torch.Tensor, cache_position: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write `key`/`value` `[B, H, t, hs]` at the `t` positions `cache_position`; return the full buffers."""
        k, v = self.keys[layer], self.values[layer]
        k.index_copy_(2, cache_position, key)  # type: ignore[union-attr]
        v.index_copy_(2, cache_position, value)  # type: ignore[union-attr]
        return k, v  # type: ignore[return-value]

    def at(self, cache_position: torch.Tensor) -> _PositionedCache:
        """What the attention layers see during a fixed-shape step: `update` writes at `cache_position`."""
        return _PositionedCache(self, cache_position)

    def reset(self) -> None:
        """Forget every position (the buffers are kept; stale values are masked out)."""
        self.length = 0
        self.cross = [None] * self.n_layer

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows in place (the buffers keep their addresses)."""
        for i in range(self.n_layer):
            self.keys[i].copy_(self.keys[i].index_select(0, index))  # type: ignore[union-attr]
            self.values[i].copy_(self.values[i].index_select(0, index))  # type: ignore[union-attr]


class _PositionedCache:
    """A `StaticKVCache` seen through one step's tensor write position (attention calls `update`).

    `single_query` tells the attention layers that each row brings one query over the
    whole capacity-wide buffers, so they attend with sums a compiler fuses instead of an
    SDPA kernel (`gpt2kit.nn.backbone._single_query_attention`).
    """

    single_query = True

    def __init__(self, cache: StaticKVCache, cache_position: torch.Tensor) -> None:
        self.cache, self.cache_position = cache, cache_position
        self.cross = cache.cross

    def update(
        self, layer: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.write(layer, key, value, self.cache_position)


class ForeignCache:
    """Another library's cache object (`transformers.DynamicCache`, ...) seen as a `KVCache`.

    Why: code written for `transformers` builds a `DynamicCache()` and passes the same
    object to every call, expecting the model to write into it. The attention layers call
    `update(layer, key, value)` as on a `KVCache`; it goes to the object's own
    `update(key, value, layer)`, which returns every cached key/value of that layer.
    """

    def __init__(self, cache: object, n_layer: int) -> None:
        self.cache = cache
        self.n_layer = n_layer
        self.length = int(cache.get_seq_length())  # type: ignore[attr-defined]
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer

    @staticmethod
    def accepts(cache: object) -> bool:
        """Whether `cache` looks like a `transformers` cache (has `update` and `get_seq_length`)."""
        return callable(getattr(cache, "update", None)) and callable(
            getattr(cache, "get_seq_length", None)
        )

    def update(
        self, layer: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.update(key, value, layer)  # type: ignore[attr-defined]

    def advance(self, t: int) -> None:
        self.length += t

    def get_seq_length(self) -> int:
        return self.length
