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
    logits: torch.Tensor, labels: torch.Tensor, config: GPT2Config
) -> torch.Tensor:
    """MSE, cross-entropy or BCE on pooled `logits [B, num_labels]`, by `problem_type`."""
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
    logits: torch.Tensor, labels: torch.Tensor, what: str = "labels", ignore_index: int = -100
) -> torch.Tensor:
    """Mean cross-entropy of `logits [..., K]` against class ids `labels [...]`; `ignore_index`
    entries are skipped. Ids outside `[0, K)` are a `ValueError` naming `what` (CUDA would
    only assert), so token, choice and span heads share one checked loss."""
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
