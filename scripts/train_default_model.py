"""Train gpt2kit's embedded default model: a tiny GPT-2 on Tiny Shakespeare.

This is the recipe behind `src/gpt2kit/assets/default_model/` (run through
`recipes/default_model.sh`). It uses the gpt2kit model and a plain AdamW loop with
warmup + cosine decay; nothing else. The last 10% of the text (by characters) is held out
and never trained on; the script reports the held-out loss of the final model and of the
unigram baseline (token frequencies of the training split, add-one smoothed over the
vocabulary) so the number has a reference point.

Example:
    python scripts/train_default_model.py --data ../shared/data/tinyshakespeare.txt \\
        --out src/gpt2kit/assets/default_model --steps 1000
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from gpt2kit import GPT2Config, GPT2LMHeadModel

ASSETS = Path(__file__).resolve().parents[1] / "src" / "gpt2kit" / "assets" / "gpt2"


def gpt2_tokenizer() -> Tokenizer:
    """The real GPT-2 byte-level BPE, straight from the shipped vocab.json/merges.txt."""
    bpe = models.BPE.from_file(str(ASSETS / "vocab.json"), str(ASSETS / "merges.txt"))
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


@torch.no_grad()
def heldout_loss(model: GPT2LMHeadModel, ids: torch.Tensor, block: int, batch: int = 16) -> float:
    """Mean next-token cross-entropy over the held-out ids, in non-overlapping blocks."""
    model.eval()
    n = (len(ids) - 1) // block
    x = ids[: n * block].view(n, block)
    y = ids[1 : n * block + 1].view(n, block)
    total = 0.0
    for i in range(0, n, batch):
        logits = model(x[i : i + batch]).logits
        total += torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), y[i : i + batch].flatten(), reduction="sum"
        ).item()
    model.train()
    return total / (n * block)


def unigram_loss(train: torch.Tensor, heldout: torch.Tensor, vocab: int) -> float:
    counts = torch.bincount(train, minlength=vocab).double() + 1.0
    logp = (counts / counts.sum()).log()
    return float(-logp[heldout].mean())


def finish_folder(out: Path) -> None:
    """Add the tokenizer files and the decoding defaults to a saved model folder.

    `tokenizer.json` is left out: it repeats vocab.json + merges.txt (2 MB) and both
    gpt2kit and `transformers` build the same tokenizer from those two files.
    """
    from gpt2kit.generation import GenerationConfig
    from gpt2kit.tokenizer import GPT2Tokenizer

    GPT2Tokenizer.from_pretrained("gpt2").save_pretrained(out)
    (out / "tokenizer.json").unlink(missing_ok=True)
    # Greedy decoding loops on a model this small; sampling reads like the training text.
    GenerationConfig(
        do_sample=True,
        temperature=0.8,
        top_k=50,
        max_new_tokens=200,
        bos_token_id=50256,
        eos_token_id=50256,
        pad_token_id=50256,
    ).save_pretrained(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=1000, help="maximum number of steps")
    p.add_argument(
        "--time-budget-min",
        type=float,
        default=None,
        help="stop after this many minutes of training and decay the learning rate over that "
        "time instead of over --steps (for a shared machine whose speed is not known ahead)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--block", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--eval-every", type=int, default=0, help="held-out eval every N steps (0: end only)"
    )
    p.add_argument("--log", default=None, help="JSONL file for training metrics")
    p.add_argument("--summary", default=None, help="JSON file for the final numbers")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    text = Path(args.data).read_text(encoding="utf-8")
    split = int(len(text) * 0.9)
    # Cut at a line break so no line straddles the split.
    split = text.rfind("\n", 0, split) + 1
    tok = gpt2_tokenizer()
    train = torch.tensor(tok.encode(text[:split]).ids, dtype=torch.long)
    held = torch.tensor(tok.encode(text[split:]).ids, dtype=torch.long)

    config = GPT2Config(
        vocab_size=50257,
        n_positions=args.block,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=50256,
        eos_token_id=50256,
    )
    model = GPT2LMHeadModel(config)
    # Tokens absent from the training text all share one embedding row `shared`: the
    # softmax over the full vocabulary then equals a softmax over the seen tokens plus one
    # class with logit h.shared + log(n_unseen). Training computes that exactly with ~11k
    # classes instead of 50257 (the LM head is most of this model's compute), and the saved
    # model is an ordinary GPT-2 whose unseen rows are copies of `shared`.
    seen = torch.unique(train)
    unseen = torch.ones(config.vocab_size, dtype=torch.bool)
    unseen[seen] = False
    remap = torch.full((config.vocab_size,), -1, dtype=torch.long)
    remap[seen] = torch.arange(len(seen))
    shared = torch.nn.Parameter(model.transformer.wte.weight[unseen].mean(0).detach().clone())
    log_unseen = math.log(int(unseen.sum()))

    def install_shared() -> None:
        with torch.no_grad():
            model.transformer.wte.weight[unseen] = shared.detach()

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": 0.1},
            {"params": no_decay + [shared], "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        frac = (step - args.warmup) / max(1, args.steps - args.warmup)
        if args.time_budget_min:
            frac = max(frac, (time.time() - start) / (60 * args.time_budget_min))
        frac = min(frac, 1.0)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    log = open(args.log, "w") if args.log else None  # noqa: SIM115
    gen = torch.Generator().manual_seed(args.seed)
    start = time.time()
    steps_done = 0
    for step in range(args.steps):
        if args.time_budget_min and time.time() - start > 60 * args.time_budget_min:
            break
        steps_done = step + 1
        ix = torch.randint(len(train) - args.block - 1, (args.batch_size,), generator=gen)
        x = torch.stack([train[i : i + args.block] for i in ix])
        y = torch.stack([train[i + 1 : i + args.block + 1] for i in ix])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        h = model.transformer(x).last_hidden_state  # (B, T, d)
        rows = torch.cat([model.transformer.wte.weight[seen], shared[None]])  # (n_seen + 1, d)
        logits = h @ rows.T
        logits[..., -1] += log_unseen
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), remap[y].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*model.parameters(), shared], 1.0)
        opt.step()
        rec = {
            "step": step + 1,
            "loss": round(loss.item(), 4),
            "elapsed_s": round(time.time() - start, 1),
        }
        if args.eval_every and (step + 1) % args.eval_every == 0:
            install_shared()
            rec["heldout_loss"] = round(heldout_loss(model, held, args.block), 4)
        if log:
            log.write(json.dumps(rec) + "\n")
            log.flush()
    install_shared()
    minutes = (time.time() - start) / 60
    final = heldout_loss(model, held, args.block)  # full 50257-way softmax
    uni = unigram_loss(train, held, config.vocab_size)

    out = Path(args.out)
    card = out / "README.md"
    card_text = card.read_text(encoding="utf-8") if card.is_file() else None
    model.save_pretrained(out, dtype=torch.float16)  # replaces the folder atomically
    finish_folder(out)
    if card_text is not None:  # keep the model card; update its numbers by hand
        card.write_text(card_text, encoding="utf-8")
    summary = {
        "heldout_loss": round(final, 4),
        "heldout_perplexity": round(math.exp(final), 2),
        "unigram_heldout_loss": round(uni, 4),
        "train_tokens": len(train),
        "heldout_tokens": len(held),
        "steps": steps_done,
        "tokens_seen": steps_done * args.batch_size * args.block,
        "train_minutes": round(minutes, 1),
        "seen_token_types": len(seen),
        "parameters": model.num_parameters(),
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}",
        "args": vars(args),
    }
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
