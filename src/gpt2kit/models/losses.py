"""Losses shared by the heads: shifted LM cross-entropy and the `problem_type` dispatch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import GPT2Config


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of token t+1 given tokens <= t; label `-100` is ignored.

    `logits [..., T, V]`, `labels [..., T]` (unshifted: pass `labels = input_ids`).
    """
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels have shape {tuple(labels.shape)}; expected {tuple(logits.shape[:-1])} (one per token)"
        )
    shift_logits = logits[..., :-1, :].reshape(-1, logits.shape[-1])
    shift_labels = labels[..., 1:].reshape(-1).to(logits.device)
    return F.cross_entropy(shift_logits.float(), shift_labels, ignore_index=-100)


def _check_targets(labels: torch.Tensor, vocab: int, ignore_index: int) -> None:
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= vocab))
    if bool(bad.any()):
        raise ValueError(
            f"labels must be token ids in [0, {vocab}) (or {ignore_index} to ignore); got "
            f"{labels[bad][:5].tolist()}"
        )


def _chunk_rows(vocab: int, device: torch.device) -> int:
    if device.type == "cpu":
        # ~8 MB of fp32 logits per chunk (128 rows at GPT-2's 50257): large enough for
        # efficient matmuls, small enough to stay in cache between the three products.
        return max(128, (1 << 21) // max(vocab, 1))
    # Accelerators: ~512 MB of fp32 logits per chunk (2670 rows at 50257), so a 16 x 1024
    # batch takes 7 chunks: large products, few passes over the [V, d] weight gradient.
    return max(1024, (1 << 27) // max(vocab, 1))


class _LinearCrossEntropy(torch.autograd.Function):
    """Cross-entropy of `hidden @ weight.T`, computed chunk by chunk with its gradients.

    The `[N, V]` logits are never materialized whole: each chunk's logits are turned into
    `softmax - onehot` in place and immediately multiplied into the gradients of `hidden`
    and `weight` during the forward pass, so backward only scales them by the incoming
    gradient (the scheme of Liger-Kernel's fused linear cross-entropy). Each chunk is
    computed transposed (`weight @ hidden_chunk.T`, `[V, rows]`): on CPU BLAS that product
    is ~1.7x faster than `hidden_chunk @ weight.T` at these shapes (measured, 2-core EPYC).
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index, matmul_dtype):  # type: ignore[override]
        n, vocab = hidden.shape[0], weight.shape[0]
        valid = labels != ignore_index
        count = valid.sum()
        # mean over the scored tokens, like F.cross_entropy (nan when there is none)
        scale = valid.to(torch.float32) / count
        targets = labels.clamp(min=0)
        w, hid = weight.to(matmul_dtype), hidden.to(matmul_dtype)
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if ctx.needs_input_grad[1]
            else None
        )
        total = hidden.new_zeros((), dtype=torch.float32)
        step = _chunk_rows(vocab, hidden.device)
        for start in range(0, n, step):
            rows = slice(start, start + step)
            h, y, s = hid[rows], targets[rows], scale[rows]
            logits_t = (w @ h.T).float()  # [V, rows]
            cols = torch.arange(h.shape[0], device=h.device)
            lse = torch.logsumexp(logits_t, 0)
            total += ((lse - logits_t[y, cols]) * s).sum()
            if grad_hidden is None and grad_weight is None:
                continue
            probs_t = logits_t.sub_(lse).exp_()
            probs_t[y, cols] -= 1.0
            grad_t = probs_t.mul_(s).to(matmul_dtype)  # d(mean loss)/d(logits), transposed
            if grad_hidden is not None:
                if matmul_dtype == hidden.dtype:
                    torch.mm(grad_t.T, w, out=grad_hidden[rows])
                else:
                    grad_hidden[rows] = grad_t.T @ w
            if grad_weight is not None:
                if matmul_dtype == torch.float32:
                    grad_weight.addmm_(grad_t, h)
                else:  # reduced-precision product, fp32 sum over chunks
                    grad_weight += grad_t @ h
        ctx.grads = (grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        grad_hidden, grad_weight = ctx.grads
        ctx.grads = None
        gh = grad_hidden * grad_output.to(grad_hidden.dtype) if grad_hidden is not None else None
        gw = None
        if grad_weight is not None:
            gw = (grad_weight * grad_output).to(ctx.weight_dtype)
        return gh, gw, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> torch.Tensor:
    """Mean cross-entropy of `hidden [N, d] @ weight[V, d].T` against `labels [N]`.

    Equals `F.cross_entropy(hidden @ weight.T, labels, ignore_index=...)` (fp32 logits)
    without ever holding the `[N, V]` logits; gradients flow to `hidden` and `weight`.
    """
    labels = labels.to(hidden.device)
    _check_targets(labels, weight.shape[0], ignore_index)
    # Under autocast the products run in its dtype (as `lm_head(hidden)` would: bf16 on a
    # GPU is several times fp32's speed); the softmax and the sums stay fp32.
    device = hidden.device.type
    matmul_dtype = _autocast_dtype(device) or hidden.dtype
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(hidden, weight, labels, ignore_index, matmul_dtype)


def _autocast_dtype(device: str) -> torch.dtype | None:
    """The dtype autocast casts matmuls to on `device`, or None when it is off."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        on = torch.is_autocast_enabled(device)
        return torch.get_autocast_dtype(device) if on else None
    if device == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


def shifted_lm_labels(labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Labels moved one position left (position t predicts token t+1); the last is ignored.

    Shifting the labels instead of slicing the logits avoids copying the `[B, T, V]` logits.
    """
    shifted = torch.full_like(labels, ignore_index)
    shifted[..., :-1] = labels[..., 1:]
    return shifted


def wants_logits(return_logits: bool | None, skip_logits: bool | None) -> bool:
    """Whether an LM head computes its logits: yes unless `return_logits=False` or Liger's
    `skip_logits=True` asks for the chunked loss alone."""
    if return_logits is not None and skip_logits is not None and return_logits == skip_logits:
        raise ValueError(
            f"return_logits={return_logits} and skip_logits={skip_logits} disagree; pass one"
        )
    if skip_logits is not None:
        return not skip_logits
    return return_logits is not False


def keep_positions(hidden: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    """`hidden [..., T, d]` at the last `logits_to_keep` positions (0 = all), or at the
    positions a 1-D index tensor names (`transformers`' two forms)."""
    if isinstance(logits_to_keep, torch.Tensor):
        return hidden[..., logits_to_keep.to(hidden.device), :]
    return hidden[..., -logits_to_keep:, :] if logits_to_keep else hidden


def lm_head_outputs(
    lm_head: torch.nn.Linear,
    hidden: torch.Tensor,
    labels: torch.Tensor | None,
    return_logits: bool | None = True,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """`(logits, loss)` of an LM head over `hidden [..., T, d]` with unshifted `labels`.

    `return_logits` (default, also `None`): the logits and the ordinary loss. `False`: the
    loss from the chunked `linear_cross_entropy` (no `[B, T, V]` tensor, ~1.4x faster
    LM-head step on CPU) and no logits. `num_items_in_batch`: the loss is the sum over
    scored tokens divided by it (`transformers.Trainer`'s gradient-accumulation-exact
    normalization), else their mean.
    """
    if return_logits is not False:
        logits = lm_head(hidden)
        if labels is None:
            return logits, None
        return logits, _renormalize(causal_lm_loss(logits, labels), labels, num_items_in_batch)
    if labels is None:
        raise ValueError("return_logits=False needs labels (there is nothing else to return)")
    if labels.shape != hidden.shape[:-1]:
        raise ValueError(
            f"labels have shape {tuple(labels.shape)}; expected {tuple(hidden.shape[:-1])} (one per token)"
        )
    if lm_head.bias is not None:
        raise ValueError(
            "the fused LM loss supports a bias-free lm_head only; pass return_logits=True"
        )
    targets = shifted_lm_labels(labels).reshape(-1)
    weight = getattr(lm_head, "weight", None)
    if weight is None and callable(getattr(lm_head, "dequantize", None)):
        # a weight-only quantized head (QLoRA training on a quantized base): its frozen
        # weight dequantized for this loss, one [V, d] float matrix (smaller than the
        # [B, T, V] logits of the other path); no gradient reaches it
        weight = lm_head.dequantize(dtype=hidden.dtype)
    loss = linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), weight, targets)
    return None, _renormalize(loss, labels, num_items_in_batch)


def _renormalize(
    mean_loss: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None
) -> torch.Tensor:
    """A mean over the scored (shifted, non -100) tokens as their sum / `num_items_in_batch`."""
    if num_items_in_batch is None:
        return mean_loss
    scored = (labels[..., 1:] != -100).sum().to(mean_loss.device)
    items = torch.as_tensor(num_items_in_batch, device=mean_loss.device)
    return mean_loss * scored / items


def infer_problem_type(config: GPT2Config, labels: torch.Tensor) -> str:
    """`config.problem_type`, or the `transformers` rule: 1 label -> regression, integer
    labels -> single-label, float labels -> multi-label. The choice is stored in the config."""
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    return config.problem_type


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor | None, config: GPT2Config
) -> torch.Tensor | None:
    """MSE, cross-entropy or BCE on pooled `logits [B, num_labels]`, by `problem_type`;
    None without labels (every head's loss is optional)."""
    if labels is None:
        return None
    problem = infer_problem_type(config, labels)
    n = config.num_labels
    labels = labels.to(logits.device)
    if problem == "regression":
        if n == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if problem == "single_label_classification":
        flat = labels.reshape(-1)
        bad = (flat != -100) & ((flat < 0) | (flat >= n))
        if bool(bad.any()):
            raise ValueError(
                f"labels must be class ids in [0, {n}) (or -100 to ignore); got "
                f"{flat[bad][:5].tolist()}. Set num_labels (or id2label) to cover every class"
            )
        return F.cross_entropy(logits.reshape(-1, n), flat)
    if labels.shape != logits.shape:
        raise ValueError(
            f"multi-label labels must be [batch, {n}] 0/1 floats; got shape {tuple(labels.shape)}"
        )
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def class_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    what: str = "labels",
    ignore_index: int = -100,
) -> torch.Tensor | None:
    """Mean cross-entropy of `logits [..., K]` against class ids `labels [...]`; `ignore_index`
    entries are skipped. Ids outside `[0, K)` are a `ValueError` naming `what` (CUDA would
    only assert), so token, choice and span heads share one checked loss. None without
    labels."""
    if labels is None:
        return None
    k = logits.shape[-1]
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"{what} must have shape {tuple(logits.shape[:-1])}; got {tuple(labels.shape)}"
        )
    flat = labels.reshape(-1).to(logits.device).long()
    bad = (flat != ignore_index) & ((flat < 0) | (flat >= k))
    if bool(bad.any()):
        raise ValueError(
            f"{what} must be in [0, {k}) (or {ignore_index} to ignore); got {flat[bad][:5].tolist()}"
        )
    return F.cross_entropy(logits.reshape(-1, k).float(), flat, ignore_index=ignore_index)


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor | None,
    end_positions: torch.Tensor | None,
) -> torch.Tensor | None:
    """(CE(start) + CE(end)) / 2 of span logits `[B, T]` against token positions `[B]`; None
    unless both positions are given. Positions outside the input (>= T) are clamped to T and
    ignored, as `transformers` does for answers cut off by truncation."""
    if start_positions is None or end_positions is None:
        return None
    T = start_logits.shape[-1]
    start = start_positions.reshape(-1).clamp(0, T)
    end = end_positions.reshape(-1).clamp(0, T)
    return (
        class_cross_entropy(start_logits, start, "start_positions", T)
        + class_cross_entropy(end_logits, end, "end_positions", T)
    ) / 2
