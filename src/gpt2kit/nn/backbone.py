"""The GPT-2 backbone: attention, MLP, block, and `GPT2Model`.

Module names equal the checkpoint keys (`h.0.attn.c_attn`, `ln_f`, ...). The projections
are `nn.Linear` (weights `[out, in]`); the Hugging Face files store them as `Conv1D`
(`[in, out]`) and `gpt2kit.checkpoint` transposes on load and save, so nothing here knows
about files.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import GPT2Config
from ..config_checks import check_allocation

# (the private names too: models pickled before the move name them here)
from .activations import ACT_FNS, _gelu_fast, _gelu_tanh, _identity, _quick_gelu  # noqa: F401
from .base import GPT2PreTrainedModel
from .cache import ForeignCache, KVCache
from .dropout import Dropout, attention_with_dropout, dropout
from .outputs import BaseModelOutput

# The mark on a head's `forward` that says it is exactly GPT-2's LM step (backbone, then the
# tied `lm_head` on the kept positions): `gpt2kit.decode` may then run a plain batch-1 step
# as one native call. Set on `GPT2LMHeadModel.forward` only; a subclass that overrides
# `forward` lacks it. A mark, so the decode layer never imports the heads.
PLAIN_LM_STEP = "_gpt2kit_plain_lm_step"


@functools.cache
def _cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); unknown counts as yes."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is None or amx is None:
        return True
    return bool(probe() or amx())


class Linear(nn.Linear):
    """`nn.Linear` whose CPU product takes the faster of two forms of the same math for
    the input's shape (plain PyTorch, no state; decoding's kernels and packed weights are
    `gpt2kit.decode`'s, which stands in for these products while it decodes):

    - fp32, 2 to `FEW_ROWS` rows: oneDNN/MKL compute `x @ W.T` 1.3-2.4x slower on this
      project's CPUs than the same product as `(W @ x.T).T` (measured: the 50257-wide LM
      head at 8 rows, 97 ms vs 40 ms; a 768->2304 projection, 4.3 ms vs 2.0 ms). Same
      math, different summation order (fp32 results agree to ~1e-6).
    - bf16 on a CPU without bf16 units (no AVX512-BF16/AMX): PyTorch emulates bf16
      products row by row, so from `UPCAST_ROWS` rows on the product runs in fp32 on
      upcast copies and is rounded back to bf16: measured (2-core EPYC, 768->3072) 118.9
      vs 44.0 ms at 256 rows, 485.7 vs 114.5 ms at 1024.
    """

    _gpt2kit_plain_linear = True  # (`gpt2kit.quantization` replaces it like nn.Linear)

    FEW_ROWS = 256
    UPCAST_ROWS = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if x.device.type != "cpu" or x.numel() == 0:
            return F.linear(x, weight, bias)
        rows = x.numel() // x.shape[-1]
        if x.dtype == torch.bfloat16 and rows >= self.UPCAST_ROWS and not _cpu_has_bf16_units():
            up_bias = bias.float() if bias is not None else None
            return F.linear(x.float(), weight.float(), up_bias).to(x.dtype)
        if x.dtype != torch.float32 or not 1 < rows <= self.FEW_ROWS or not weight.is_contiguous():
            return F.linear(x, weight, bias)
        x2d = x.reshape(rows, x.shape[-1])
        if bias is None:
            y = torch.mm(weight, x2d.t())
        else:
            y = torch.addmm(bias[:, None], weight, x2d.t())
        return y.t().contiguous().view(*x.shape[:-1], self.out_features)


class GPT2Attention(nn.Module):
    """Multi-head attention; causal self-attention, or cross-attention over an encoder."""

    def __init__(self, config: GPT2Config, layer_idx: int, is_cross_attention: bool = False):
        super().__init__()
        d = config.n_embd
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.is_cross_attention = is_cross_attention
        self.upcast = config.reorder_and_upcast_attn
        self.scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_idx + 1)
        self.layer_idx = layer_idx
        if is_cross_attention:
            self.q_attn = Linear(d, d)
            self.c_attn = Linear(d, 2 * d)
        else:
            self.c_attn = Linear(d, 3 * d)
        self.c_proj = Linear(d, d)
        self.attn_pdrop = config.attn_pdrop
        # `attn_implementation="eager"` (`GPT2PreTrainedModel.set_attn_implementation`)
        self.eager_attention = config.get("_attn_implementation") == "eager"
        self.resid_dropout = Dropout(config.resid_pdrop)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`x [B, T, d]`; `mask` bool, True = may attend, broadcastable to `[B, nh, T, S]`.

        With `mask=None` self-attention is plain causal (no padding, no past).
        """
        if self.is_cross_attention:
            q = self._heads(self.q_attn(x))
            kv = cache.cross[self.layer_idx] if cache is not None else None
            if kv is None:
                k, v = self.c_attn(encoder_hidden_states).split(x.shape[-1], dim=2)
                kv = (self._heads(k), self._heads(v))
                if cache is not None:  # the encoder output is fixed: project it once
                    cache.cross[self.layer_idx] = kv
            k, v = kv
            causal = False
        else:
            qkv = self.c_attn(x)
            q, k, v = (self._heads(t) for t in qkv.split(x.shape[-1], dim=2))
            if cache is not None:
                k, v = cache.update(self.layer_idx, k, v)
            causal = mask is None and q.shape[2] > 1

        weights = None
        if output_attentions or self.eager_attention or (self.upcast and q.dtype != torch.float32):
            y, weights = self._eager(q, k, v, mask, causal)
        elif getattr(cache, "single_query", False):
            y = _single_query_attention(q, k, v, mask, self.scale)
        elif self.training and self.attn_pdrop > 0:  # (SDPA's math path, native dropout)
            y = attention_with_dropout(q, k, v, mask, self.attn_pdrop, causal, self.scale)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, scale=self.scale
            )
        y = y.transpose(1, 2).reshape(x.shape)  # (B, T, d)
        return self.resid_dropout(self.c_proj(y)), weights

    def _eager(self, q, k, v, mask, causal):
        # Explicit softmax(q k^T) v, in fp32 (what `reorder_and_upcast_attn` asks for under
        # mixed precision); also the path that can return the attention weights.
        att = torch.matmul(q.float(), k.float().transpose(-1, -2)) * self.scale  # (B, nh, T, S)
        if causal:
            T, S = att.shape[-2:]
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        if mask is not None and mask.dtype == torch.bool:
            att = att.masked_fill(~mask, torch.finfo(att.dtype).min)
        elif mask is not None:  # additive (a float 4-D mask)
            att = att + mask.to(att.dtype)
        att = dropout(att.softmax(-1).to(v.dtype), self.attn_pdrop, self.training)
        return torch.matmul(att, v), att


def _single_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """Attention of one query per row `q [B, H, 1, hs]` over `k, v [B, H, C, hs]` under a
    bool `mask [B, 1, 1, C]`, written as sums instead of SDPA.

    Why: in the compiled decode step (`cache_implementation="static"`) a compiler fuses
    these into a couple of reduction kernels, while an SDPA kernel, tiled for long
    queries, runs one 64-row tile per head for a single row: 17 us of the 50 us a layer
    takes in a CUDA-graph replay of GPT-2 small at batch 1 (H200, bf16). Products and
    sums in fp32, as SDPA accumulates.
    """
    scores = (q.float() * k.float()).sum(-1) * scale  # [B, H, C]
    scores = scores.masked_fill(~mask[:, :, 0], float("-inf"))
    weights = scores.softmax(-1)
    return (weights[..., None] * v.float()).sum(-2, keepdim=True).to(q.dtype)


class GPT2MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.c_fc = Linear(config.n_embd, config.inner_dim)
        self.c_proj = Linear(config.inner_dim, config.n_embd)
        self.act = ACT_FNS[config.activation_function]
        self.dropout = Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    """Pre-norm transformer block; cross-attention between the two when configured."""

    def __init__(self, config: GPT2Config, layer_idx: int):
        super().__init__()
        eps = config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=eps)
        self.attn = GPT2Attention(config, layer_idx)
        if config.add_cross_attention:
            self.crossattention = GPT2Attention(config, layer_idx, is_cross_attention=True)
            self.ln_cross_attn = nn.LayerNorm(config.n_embd, eps=eps)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=eps)
        self.mlp = GPT2MLP(config)

    def forward(self, x, mask, cache=None, enc=None, enc_mask=None, output_attentions=False):
        a, attn = self.attn(self.ln_1(x), mask, cache, output_attentions=output_attentions)
        x = x + a
        cross = None
        if enc is not None:
            c, cross = self.crossattention(
                self.ln_cross_attn(x), enc_mask, cache, enc, output_attentions
            )
            x = x + c
        x = x + self.mlp(self.ln_2(x))
        return x, attn, cross


def as_token_ids(input_ids: object, device: torch.device) -> torch.Tensor | None:
    """`input_ids` as a tensor: Python lists (`[[1, 2], [3, 4]]`, or one list for one row)
    are converted; ragged lists are an error that says to pad them."""
    if input_ids is None or isinstance(input_ids, torch.Tensor):
        return input_ids
    if isinstance(input_ids, (list, tuple)):
        rows = list(input_ids)
        if rows and not isinstance(rows[0], (list, tuple)):
            rows = [rows]
        if len({len(r) for r in rows}) > 1:
            raise ValueError(
                f"input_ids rows have different lengths {sorted({len(r) for r in rows})}; pad "
                "them (tokenizer(..., padding=True, return_tensors='pt')) and pass attention_mask"
            )
        try:
            return torch.tensor(rows, dtype=torch.long, device=device)
        except (TypeError, ValueError) as err:
            raise ValueError(f"input_ids must be lists of integer token ids ({err})") from err
    raise ValueError(
        f"input_ids must be a tensor [batch, tokens] (or lists of ints); got {type(input_ids).__name__}"
    )


def check_cache_position(cache_position: torch.Tensor, past: int, t: int) -> None:
    """`cache_position` must name the positions after the cached ones: `past .. past + t - 1`
    (the cache appends; it cannot write elsewhere)."""
    flat = cache_position.reshape(-1)
    if flat.numel() != t or (t and (int(flat[0]) != past or int(flat[-1]) != past + t - 1)):
        raise ValueError(
            f"cache_position must be [{past}, ..., {past + t - 1}] (the {t} positions after the "
            f"{past} cached ones); got {flat[:8].tolist()}. Crop the cache to rewrite positions"
        )


def full_attention_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A 4-D `[B, 1, T, S]` mask as the attention reads it: bool (True = may attend) for
    bool or integer masks, additive in `dtype` for float masks (0 = attend, large negative
    = blocked), as `transformers` reads them."""
    if mask.dim() != 4:
        raise ValueError(
            f"a full attention mask is [batch, 1, tokens, keys]; got {tuple(mask.shape)}"
        )
    if mask.is_floating_point():
        return mask.to(dtype)
    return mask.bool()


def positions_from_mask(attention_mask: torch.Tensor, past_length: int, t: int) -> torch.Tensor:
    """Position of each of the last `t` tokens: the count of real tokens before it.

    `attention_mask [B, past + t]`; left-padded rows get the positions of the same text
    unpadded. Pad slots get their index, as in `transformers` (their outputs are not
    meant to be used; this way they equal `transformers`' on right-padded batches).
    """
    mask = attention_mask.bool()
    pos = mask.long().cumsum(-1) - 1
    index = torch.arange(mask.shape[-1], device=mask.device).expand_as(pos)
    return torch.where(mask, pos, index)[:, past_length : past_length + t]


class GPT2Model(GPT2PreTrainedModel):
    """The GPT-2 transformer: token + position embeddings, `n_layer` blocks, final norm.

    Args of `forward` (shapes): `input_ids [B, T]` or `inputs_embeds [B, T, d]`;
    `attention_mask [B, past + T]` (1 = real token, 0 = pad; left or right padding) or a
    full mask `[B, 1, T, past + T]`: bool (True = may attend, e.g. block-diagonal for packed
    texts) or float additive (0 = attend, as `transformers`); `position_ids [B, T]`
    (derived from a 2-D mask when absent, so left padding does not shift positions; `0..T-1`
    after the cache with a 4-D mask); `token_type_ids [B, T]` (embedded with
    `wte`, as GPT-2 does); `past_key_values` (or `cache`) a `KVCache`, a `transformers` cache such as `DynamicCache`
    (written in place) or the legacy tuple; `cache_position` (checked, the cache appends);
    `return_dict=False` gives the output as a tuple;
    `encoder_hidden_states [B, S, d]` and `encoder_attention_mask [B, S]` for cross-attention.

    Example:
        >>> cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100)
        >>> model = GPT2Model(cfg).eval()
        >>> model(torch.tensor([[1, 2, 3]])).last_hidden_state.shape
        torch.Size([1, 3, 32])
    """

    base_model_prefix = ""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        check_allocation(config)  # a size no memory holds is refused before anything is built
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        past_key_values: KVCache | tuple | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool | None = None,
        cache: KVCache | tuple | None = None,
        cache_position: torch.Tensor | None = None,
    ) -> BaseModelOutput | tuple:
        """The arguments are `BackboneArgs` (see `models/arguments.py`), in `transformers`' order."""
        if cache is not None:  # (transformers 5.x's name)
            if past_key_values is not None:
                raise ValueError("pass the cache as past_key_values or as cache, not both")
            past_key_values = cache
        input_ids = as_token_ids(input_ids, self.device)
        if attention_mask is not None and not isinstance(attention_mask, torch.Tensor):
            if not isinstance(attention_mask, (list, tuple)):
                raise ValueError(
                    "attention_mask must be a tensor [batch, tokens] (or lists of 0/1); got "
                    f"{type(attention_mask).__name__}"
                )
            try:  # lists, as input_ids; no dtype forced, so 0.5 is refused below, not truncated
                attention_mask = torch.tensor(attention_mask, device=self.device)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"attention_mask must be rectangular lists of 0/1, one row per input ({err})"
                ) from err
            if attention_mask.dim() == 1:
                attention_mask = attention_mask[None]  # one row, as a flat input_ids list
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(
                    f"input_ids must be [batch, tokens], got shape {tuple(input_ids.shape)}"
                )
            if (
                input_ids.is_floating_point()
                or input_ids.is_complex()
                or input_ids.dtype == torch.bool
            ):
                raise ValueError(
                    f"input_ids must hold integer token ids, got dtype {input_ids.dtype} "
                    "(convert with .long(); to pass vectors, use inputs_embeds)"
                )
            if input_ids.numel() and (
                input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size
            ):
                raise ValueError(
                    f"input_ids must be in [0, {self.config.vocab_size}); got values in "
                    f"[{int(input_ids.min())}, {int(input_ids.max())}]: the tokenizer and the "
                    "model disagree on the vocabulary (resize the embeddings or fix the ids)"
                )
            inputs_embeds = self.wte(input_ids)
        elif inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.n_embd:
            raise ValueError(
                f"inputs_embeds must be [batch, tokens, n_embd={self.config.n_embd}]; got shape "
                f"{tuple(inputs_embeds.shape)}"
            )
        B, T, _ = inputs_embeds.shape

        foreign = None
        if isinstance(past_key_values, tuple):
            past_key_values = KVCache.from_legacy(past_key_values)
        elif past_key_values is not None and not isinstance(past_key_values, KVCache):
            if not ForeignCache.accepts(past_key_values):
                raise ValueError(
                    f"past_key_values is a {type(past_key_values).__name__}; pass a KVCache, a "
                    "transformers Cache (e.g. DynamicCache) or the legacy tuple of (key, value)"
                )
            foreign = past_key_values
            past_key_values = ForeignCache(foreign, self.config.n_layer)
        # Unlike `transformers`, a plain forward builds no cache unless asked: copying every
        # key and value costs time and memory that only incremental decoding needs.
        use_cache = bool(use_cache) or past_key_values is not None
        cache = past_key_values
        if cache is None and use_cache:
            cache = KVCache(self.config.n_layer)
        past = cache.length if cache is not None else 0
        if past + T > self.config.n_positions:
            raise ValueError(
                f"sequence of {past + T} tokens ({past} cached + {T} new) exceeds the model's "
                f"{self.config.n_positions} positions (n_positions); shorten or window the input"
            )
        if cache_position is not None:
            check_cache_position(cache_position, past, T)

        if attention_mask is not None and attention_mask.dim() == 4:
            # A full [B, 1, T, past + T] mask, e.g. the block-diagonal mask of packed texts:
            # bool/integer True = may attend; float additive (0 = attend, as `transformers`).
            mask4d = full_attention_mask(attention_mask, inputs_embeds.dtype)
            attention_mask = None
            if position_ids is None:  # (as `transformers`: the caller owns the mask's meaning)
                position_ids = torch.arange(past, past + T, device=inputs_embeds.device)[None]
        else:
            mask4d = None
        if attention_mask is not None:
            if attention_mask.shape != (B, past + T):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
                    f"[batch, cached + new tokens] = [{B}, {past + T}]"
                )
            if bool(((attention_mask != 0) & (attention_mask != 1)).any()):
                raise ValueError(
                    "attention_mask must hold 0 (padding) and 1 (real token) only; got values "
                    f"{attention_mask.unique()[:6].tolist()}. For an additive float mask pass "
                    "the full 4-D [batch, 1, tokens, cached + tokens] mask"
                )
            attention_mask = attention_mask.bool()
            if bool(attention_mask.all()):
                attention_mask = None  # no padding: take the fast causal path
        if position_ids is None:
            if attention_mask is not None:
                position_ids = positions_from_mask(attention_mask, past, T)
            else:
                position_ids = torch.arange(past, past + T, device=inputs_embeds.device)[None]
        x = inputs_embeds + self.wpe(position_ids)
        if token_type_ids is not None:
            x = x + self.wte(token_type_ids)
        x = self.drop(x)

        mask = (
            mask4d
            if mask4d is not None
            else self._self_attention_mask(attention_mask, B, T, past, x.device)
        )
        enc_mask = None
        if encoder_hidden_states is not None:
            if not self.config.add_cross_attention:
                raise ValueError(
                    "encoder_hidden_states given but the model has no cross-attention; "
                    "build it with add_cross_attention=True"
                )
            if encoder_attention_mask is not None:
                enc_mask = encoder_attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)

        hidden, attentions, cross = [], [], []
        for block in self.h:
            if output_hidden_states:
                hidden.append(x)
            args = (x, mask, cache, encoder_hidden_states, enc_mask, output_attentions)
            if self.gradient_checkpointing and self.training:
                x, a, c = checkpoint(block, *args, use_reentrant=False)
            else:
                x, a, c = block(*args)
            attentions.append(a)
            cross.append(c)
        x = self.ln_f(x)
        if output_hidden_states:
            hidden.append(x)
        if cache is not None:
            cache.advance(T)
        out = BaseModelOutput(
            last_hidden_state=x,
            past_key_values=(foreign if foreign is not None else cache) if use_cache else None,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
            cross_attentions=tuple(cross)
            if output_attentions and encoder_hidden_states is not None
            else None,
        )
        return out if return_dict is not False else out.to_tuple()

    @staticmethod
    def _self_attention_mask(attention_mask, B, T, past, device) -> torch.Tensor | None:
        """Bool `[B, 1, T, past + T]` (True = may attend), or None for the plain causal case."""
        if attention_mask is None and past == 0:
            return None  # SDPA's is_causal
        if attention_mask is None and T == 1:
            return None  # one new token sees every cached one
        S = past + T
        q_pos = torch.arange(past, S, device=device)[:, None]
        mask = (torch.arange(S, device=device)[None, :] <= q_pos)[None, None]  # (1, 1, T, S)
        if attention_mask is not None:
            mask = mask & attention_mask[:, None, None, :]
            # A pad query may have no visible key at all (left padding); let it see itself
            # so softmax stays finite. Its output is not meant to be used; others see what
            # `transformers`' pad queries see.
            blind = ~mask.any(-1, keepdim=True)
            mask = mask | (blind & (torch.arange(S, device=device)[None, :] == q_pos)[None, None])
        return mask.expand(B, 1, T, S) if mask.shape[0] == 1 else mask

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def _init_module(self, module: nn.Module) -> None:
        super()._init_module(module)
        # GPT-2 paper: residual projections scaled by 1/sqrt(number of residual layers).
        if isinstance(module, (GPT2Attention, GPT2MLP)):
            std = self.config.initializer_range / math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.c_proj.weight, mean=0.0, std=std)
