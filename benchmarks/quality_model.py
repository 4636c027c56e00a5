"""A briefly trained model on real text, cached, for the quantization quality benchmark.

Quantization error depends on the weights' distribution, which random init does not
have: `bench_quant_quality.py` needs a model that has learned something. This trains a
GPT-2 of any shape (the benchmark: 124M, n_embd 768, 12 layers, 12 heads, vocab 50257,
1024 positions) with a plain AdamW loop (linear warmup, cosine decay to 10%, clipping 1.0,
weight decay 0.1 on matrices; the recipe of `scripts/train_default_model.py`) on the first
90% of a text (cut at a line break), and saves it as an ordinary gpt2kit/transformers
folder with the GPT-2 tokenizer files.

The folder is cached under `$GPT2KIT_CACHE` (default `~/.cache/gpt2kit`), in
`quality-<shape>-<key>` where the key hashes every training setting and the text's
bytes: a re-run with the same settings only loads; a changed setting trains anew. It lives
outside the repository (a 124M fp32 folder is 500 MB).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch

from gpt2kit import GPT2Config, GPT2LMHeadModel
from gpt2kit.tokenizer import GPT2Tokenizer


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_positions: int = 1024
    vocab_size: int = 50257
    steps: int = 80
    batch: int = 4
    block: int = 128
    lr: float = 6e-4
    warmup: int = 10
    seed: int = 1337

    def key(self, text: bytes) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob + hashlib.sha256(text).digest()).hexdigest()[:12]

    def shape(self) -> str:
        return f"{self.n_layer}x{self.n_embd}"


def split_text(text: str, fraction: float = 0.9) -> tuple[str, str]:
    """(training text, held-out text): the first `fraction` by characters, cut at a line
    break (the split of the bundled default model, so its held-out text is the same)."""
    cut = text.rfind("\n", 0, int(len(text) * fraction)) + 1
    return text[:cut], text[cut:]


def cache_root() -> Path:
    return Path(os.environ.get("GPT2KIT_CACHE") or Path.home() / ".cache" / "gpt2kit")


def trained_model(
    data: Path, settings: TrainSettings, log=print, cache: Path | None = None
) -> Path:
    """The folder of a model trained with `settings` on `data`'s training split, cached
    under `cache` (default `cache_root()`)."""
    raw = data.read_bytes()
    folder = (cache or cache_root()) / f"quality-{settings.shape()}-{settings.key(raw)}"
    if (folder / "training.json").is_file():
        log(f"trained model cached: {folder}")
        return folder
    train_text, _ = split_text(raw.decode("utf-8"))
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    ids = torch.tensor(tok.encode(train_text), dtype=torch.long)
    info = train(ids, settings, log)
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    info["model"].save_pretrained(tmp)
    tok.save_pretrained(tmp)
    info.pop("model")
    (tmp / "training.json").write_text(
        json.dumps({"settings": dataclasses.asdict(settings), **info}, indent=2) + "\n"
    )
    if folder.exists():  # a stale partial folder of the same key
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    log(f"trained model saved: {folder}")
    return folder


def train(ids: torch.Tensor, s: TrainSettings, log=print) -> dict:
    torch.manual_seed(s.seed)
    config = GPT2Config(
        n_embd=s.n_embd,
        n_layer=s.n_layer,
        n_head=s.n_head,
        n_positions=s.n_positions,
        vocab_size=s.vocab_size,
        # Dropout off: a few hundred steps do not overfit, and the run is shorter noise.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=s.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < s.warmup:
            return s.lr * (step + 1) / s.warmup
        progress = (step - s.warmup) / max(1, s.steps - s.warmup)
        return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(s.seed)
    start, losses = time.perf_counter(), []
    for step in range(s.steps):
        offsets = torch.randint(0, len(ids) - s.block - 1, (s.batch,), generator=gen)
        x = torch.stack([ids[o : o + s.block] for o in offsets])
        y = torch.stack([ids[o + 1 : o + s.block + 1] for o in offsets])
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = _loss(model, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % 10 == 0 or step == s.steps - 1:
            elapsed = time.perf_counter() - start
            log(f"step {step + 1}/{s.steps} loss {losses[-1]:.3f} ({elapsed:.0f} s)")
    model.eval()
    return {
        "model": model,
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_tokens": s.steps * s.batch * s.block,
        "threads": torch.get_num_threads(),
        "final_train_loss_mean10": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def _loss(model: GPT2LMHeadModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy with targets given already shifted (x -> y)."""
    logits = model(x).logits
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
