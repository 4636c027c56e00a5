"""Shared model test harness: shapes, loss, backward, save/load, determinism, config.json.

Every gpt2kit model class gets the same battery of checks from one `ModelCase`. A new task
head adds itself with ONE parametrize line in its own test file::

    from harness import ModelCase, check_model_case, lm_batch

    CASES = [ModelCase(GPT2ForTokenClassification, {"num_labels": 5}, token_labels_batch,
                       {"logits": (2, 8, 5)})]

    @pytest.mark.parametrize("case", CASES, ids=str)
    def test_harness(case, tmp_path):
        check_model_case(case, tmp_path)

`make_inputs(config, seed)` returns the forward keyword arguments (labels included, so a
loss is computed); `expected_shapes` maps output field names to their shapes for that
batch. `check_model_case` runs every check; each check is also a public function
(`check_shapes`, `check_loss`, ...) for a file that wants them as separate tests.

Tiny configs (`tiny_config`) keep each case well under a second.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpt2kit.config import GPT2Config

BATCH, SEQ = 2, 8


def left_padded_prompts(
    batch: int = 4, seed: int = 0, pad: int = 98, lengths=(6, 3, 5, 2, 4, 6, 1, 3)
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` random prompts of the first `batch` `lengths`, left-padded with `pad` (ids
    drawn from [1, pad)), and their mask: the generation tests' batches."""
    g = torch.Generator().manual_seed(seed)
    lengths = lengths[:batch]
    T = max(lengths)
    ids = torch.full((batch, T), pad, dtype=torch.long)
    mask = torch.zeros(batch, T, dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, T - n :] = torch.randint(1, pad, (n,), generator=g)
        mask[r, T - n :] = 1
    return ids, mask


def tiny_config(**overrides: Any) -> GPT2Config:
    """2 layers, width 32, 4 heads, vocabulary 100, 64 positions; BOS = EOS = 99."""
    base = dict(
        n_layer=2,
        n_embd=32,
        n_head=4,
        vocab_size=100,
        n_positions=64,
        bos_token_id=99,
        eos_token_id=99,
    )
    return GPT2Config(**{**base, **overrides})


def lm_batch(config: GPT2Config, seed: int, batch: int = BATCH, seq: int = SEQ) -> dict[str, Any]:
    """`input_ids [B, T]`, a right-padded `attention_mask` (row 1 has 3 pads), LM `labels`
    (pads set to -100)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, config.vocab_size - 1, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    if batch > 1:
        mask[1, seq - 3 :] = 0
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def backbone_batch(config: GPT2Config, seed: int) -> dict[str, Any]:
    """`lm_batch` without labels (for `GPT2Model`)."""
    batch = lm_batch(config, seed)
    del batch["labels"]
    return batch


@dataclass
class ModelCase:
    """One model class under one config, with a batch maker and the shapes it must return.

    Args:
        model_cls: the gpt2kit model class.
        config_overrides: fields changed from `tiny_config()` (e.g. `{"num_labels": 3}`).
        make_inputs: `(config, seed) -> forward kwargs`; include the labels to test the loss.
        expected_shapes: output field -> shape, e.g. `{"logits": (2, 8, 100)}`.
        no_grad: regexes of parameter names that legitimately get no gradient from this
            batch (e.g. cross-attention weights when no encoder states are passed).
        name: test id; defaults to the class name plus the overrides.
    """

    model_cls: type
    config_overrides: dict[str, Any] = field(default_factory=dict)
    make_inputs: Callable[[GPT2Config, int], dict[str, Any]] = lm_batch
    expected_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    no_grad: tuple[str, ...] = ()
    name: str | None = None

    def __str__(self) -> str:
        if self.name:
            return self.name
        extra = ",".join(f"{k}={v}" for k, v in self.config_overrides.items())
        return f"{self.model_cls.__name__}[{extra}]" if extra else self.model_cls.__name__

    def config(self) -> GPT2Config:
        return tiny_config(**self.config_overrides)

    def build(self, seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        return self.model_cls(self.config())


def has_labels(inputs: dict[str, Any]) -> bool:
    """Whether a batch carries targets (`labels`, `mc_labels`, `start_positions`, ...)."""
    return any(k.endswith("labels") or k in ("start_positions", "end_positions") for k in inputs)


# -- comparing outputs ---------------------------------------------------------------------------
def output_tensors(out: Any) -> dict[str, torch.Tensor]:
    """Every tensor of a model output by field name (tuples flattened as `name.i`)."""
    found: dict[str, torch.Tensor] = {}
    field_names = out.keys()  # a ModelOutput, not a dict: iterating it yields values
    for key in field_names:
        value = out[key]
        if isinstance(value, torch.Tensor):
            found[key] = value
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    found[f"{key}.{i}"] = item
    return found


def assert_outputs_equal(a: Any, b: Any, atol: float = 0.0, rtol: float = 0.0) -> None:
    """Same tensor fields, same values (bitwise by default)."""
    ta, tb = output_tensors(a), output_tensors(b)
    assert ta.keys() == tb.keys(), f"output fields differ: {sorted(ta)} vs {sorted(tb)}"
    for key in ta:
        torch.testing.assert_close(
            ta[key], tb[key], atol=atol, rtol=rtol, msg=lambda m, k=key: f"{k}: {m}"
        )


def _comparable_config(config: GPT2Config) -> dict[str, Any]:
    data = config.to_dict()
    for key in ("architectures", "gpt2kit_version"):
        data.pop(key, None)
    return data


# -- the checks ----------------------------------------------------------------------------------
def check_shapes(case: ModelCase, seed: int = 0) -> Any:
    """Eval forward; every field in `expected_shapes` is present with that shape."""
    model = case.build(seed).eval()
    with torch.no_grad():
        out = model(**case.make_inputs(model.config, seed))
    for name, shape in case.expected_shapes.items():
        value = out[name]
        assert value is not None, f"{case}: output {name} is None"
        assert tuple(value.shape) == tuple(shape), f"{case}: {name} {tuple(value.shape)} != {shape}"
    return out


def check_loss(case: ModelCase, seed: int = 0) -> None:
    """With labels in the batch, `loss` is a finite scalar near ln(V) at init (not 0, not huge)."""
    inputs = case.make_inputs(case.config(), seed)
    if not has_labels(inputs):
        return
    model = case.build(seed).eval()
    with torch.no_grad():
        loss = model(**inputs).loss
    assert loss is not None, f"{case}: labels given but loss is None"
    assert loss.dim() == 0, f"{case}: loss has shape {tuple(loss.shape)}, expected a scalar"
    assert torch.isfinite(loss), f"{case}: loss is {loss}"
    assert 0.0 < float(loss) < 50.0, f"{case}: implausible initial loss {float(loss)}"


def check_backward(case: ModelCase, seed: int = 0) -> None:
    """Train mode; the loss (or a random projection of the first output) back-propagates to
    every trainable parameter not in `no_grad`, with finite, non-zero gradients."""
    model = case.build(seed).train()
    out = model(**case.make_inputs(model.config, seed))
    if getattr(out, "loss", None) is not None:
        objective = out.loss
    else:
        first = out[0]
        # A random projection, not a plain sum: sum(LayerNorm(x)) has zero gradient at init.
        g = torch.Generator().manual_seed(seed)
        objective = (first * torch.randn(first.shape, generator=g)).sum()
    objective.backward()
    skip = [re.compile(p) for p in case.no_grad]
    for name, param in model.named_parameters():
        if not param.requires_grad or any(p.search(name) for p in skip):
            continue
        assert param.grad is not None, f"{case}: {name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{case}: {name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{case}: {name} has an all-zero gradient"


def check_determinism(case: ModelCase, seed: int = 0) -> None:
    """Eval mode: two forwards of the same batch are bitwise equal."""
    model = case.build(seed).eval()
    inputs = case.make_inputs(model.config, seed)
    with torch.no_grad():
        assert_outputs_equal(model(**inputs), model(**inputs))


def check_save_load(case: ModelCase, tmp_path: Path, seed: int = 0) -> None:
    """`save_pretrained` -> `from_pretrained`: same config, bitwise-equal eval outputs."""
    model = case.build(seed).eval()
    folder = Path(tmp_path) / f"roundtrip-{case.model_cls.__name__}"
    model.save_pretrained(folder)
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    loaded = case.model_cls.from_pretrained(folder)
    assert not loaded.training, "from_pretrained must return the model in eval mode"
    assert _comparable_config(loaded.config) == _comparable_config(model.config)
    inputs = case.make_inputs(model.config, seed)
    with torch.no_grad():
        assert_outputs_equal(model(**inputs), loaded(**inputs))


def check_config_json(case: ModelCase, tmp_path: Path) -> None:
    """`config.json` written and read back gives the same config; it is valid JSON with
    `model_type: gpt2`."""
    config = case.config()
    path = config.save_pretrained(Path(tmp_path) / f"config-{case.model_cls.__name__}")
    data = json.loads(path.read_text())
    assert data["model_type"] == "gpt2"
    assert _comparable_config(GPT2Config.from_json_file(path)) == _comparable_config(config)


def check_model_case(case: ModelCase, tmp_path: Path, seed: int = 0) -> None:
    """Run every check of this module on `case`."""
    check_shapes(case, seed)
    check_loss(case, seed)
    check_backward(case, seed)
    check_determinism(case, seed)
    check_save_load(case, tmp_path, seed)
    check_config_json(case, tmp_path)


# -- synthetic tasks shared by the learning tests ---------------------------------------
def reversal_pairs(
    n: int, rng: random.Random, exclude: frozenset = frozenset()
) -> list[tuple[list[int], list[int]]]:
    """Sources of 4-5 tokens over a 12-token alphabet; the target is the source reversed."""
    out = []
    while len(out) < n:
        source = [rng.randrange(3, 15) for _ in range(rng.randint(4, 5))]
        if tuple(source) not in exclude:
            out.append((source, source[::-1]))
    return out


def train_reverser(model: Any, collate: Any, steps: int = 250, batch: int = 64) -> tuple[Any, list]:
    """Train a seq2seq model on `reversal_pairs` (AdamW 3e-3); return it in eval mode with
    200 held-out pairs whose sources it never saw."""
    rng = random.Random(0)
    train = reversal_pairs(batch * steps, rng)
    test = reversal_pairs(200, rng, exclude=frozenset(tuple(s) for s, _ in train))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        loss = model(**collate(train[step * batch : (step + 1) * batch])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), test


def exact_match(predictions: list, pairs: list) -> float:
    """Share of predictions equal to their pair's target."""
    return sum(p == t for p, (_, t) in zip(predictions, pairs, strict=True)) / len(pairs)
