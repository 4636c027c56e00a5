"""Classify many short texts: packed `GPT2ForTextClassification` vs `transformers`' padded
`GPT2ForSequenceClassification`, same weights, same process, interleaved chunks.

    python benchmarks/bench_text_classification.py            # 10,000 texts, 124M, fp32 (+ bf16)
    python benchmarks/bench_text_classification.py --quick    # 200 texts, 2-layer width-128 model

Texts are random ids, 10-40 tokens each. The reference runs batches of 32 in the given order,
right-padded (what a plain DataLoader does); ours packs each chunk of texts into rows.
Prints texts/s for each and the ratio, and the largest logit difference between the two.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import torch
from common import Results, add_results_argument, results_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="200 texts on a 2-layer width-128 model: a smoke run"
    )
    parser.add_argument("--num-texts", type=int, default=10_000)
    parser.add_argument(
        "--preset", default="gpt2", help="GPT2Config preset (default the 124M gpt2)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--chunk", type=int, default=1024, help="texts per interleaved chunk")
    parser.add_argument("--no-bf16", action="store_true", help="skip our bf16 run")
    add_results_argument(parser)
    args = parser.parse_args()
    keys = ("packed-fp32", "logits-diff") + (() if args.no_bf16 else ("packed-bf16",))
    results = Results("bench_text_classification", keys, args)
    overrides = {}
    if args.quick:
        args.num_texts, args.chunk = 200, 100
        overrides = dict(n_layer=2, n_embd=128, n_head=4)
    torch.set_num_threads(args.threads)

    import transformers

    from gpt2kit.config import GPT2Config
    from gpt2kit.models.text_classification import GPT2ForTextClassification

    cfg = GPT2Config.from_name(args.preset, num_labels=2, pad_token_id=50256, **overrides)
    hf_cfg = transformers.GPT2Config(
        **{k: v for k, v in cfg.to_dict().items() if k not in ("gpt2kit_version",)}
    )
    torch.manual_seed(0)
    ref = transformers.GPT2ForSequenceClassification(hf_cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ref.save_pretrained(tmp)
        ours = GPT2ForTextClassification.from_pretrained(tmp, max_text_length=128)
    ours_bf16 = None
    if not args.no_bf16:
        ours_bf16 = GPT2ForTextClassification(ours.config).eval()
        ours_bf16.load_state_dict(ours.state_dict())
        ours_bf16.to(torch.bfloat16)

    rng = random.Random(0)
    texts = [
        [rng.randrange(50000) for _ in range(rng.randint(10, 40))] for _ in range(args.num_texts)
    ]
    n_tokens = sum(map(len, texts))

    def run_ref(chunk: list[list[int]]) -> torch.Tensor:
        out = []
        for i in range(0, len(chunk), 32):
            batch = chunk[i : i + 32]
            T = max(map(len, batch))
            ids = torch.full((len(batch), T), cfg.pad_token_id, dtype=torch.long)
            mask = torch.zeros(len(batch), T, dtype=torch.long)
            for r, t in enumerate(batch):
                ids[r, : len(t)] = torch.tensor(t)
                mask[r, : len(t)] = 1
            # use_cache=False: gpt2kit builds no cache here, so neither does the reference
            out.append(ref(input_ids=ids, attention_mask=mask, use_cache=False).logits)
        return torch.cat(out)

    runners = {
        "transformers fp32 (padded, batch 32)": run_ref,
        "gpt2kit fp32 (packed)": ours.classify,
    }
    if ours_bf16 is not None:
        runners["gpt2kit bf16 (packed)"] = ours_bf16.classify
    seconds = dict.fromkeys(runners, 0.0)
    per_chunk: dict[str, list[float]] = {name: [] for name in runners}
    max_diff = 0.0
    with torch.inference_mode():
        for fn in runners.values():  # warm-up (first-call allocations, kernel selection)
            fn(texts[:64])
        for c, start in enumerate(range(0, len(texts), args.chunk)):
            chunk = texts[start : start + args.chunk]
            logits = {}
            order = list(runners) if c % 2 == 0 else list(reversed(runners))  # interleave
            for name in order:
                t0 = time.perf_counter()
                logits[name] = runners[name](chunk).float()
                seconds[name] += time.perf_counter() - t0
                per_chunk[name].append(time.perf_counter() - t0)
            names = list(runners)
            max_diff = max(max_diff, (logits[names[0]] - logits[names[1]]).abs().max().item())

    base = "transformers fp32 (padded, batch 32)"
    model_desc = f"preset {args.preset}" + (f" with {overrides}" if overrides else "")
    print(f"{args.num_texts} texts, {n_tokens} tokens, {model_desc}, {args.threads} thread(s), CPU")
    print("  (texts/s over the whole set; ratio: the median over chunks of the per-chunk ratio)")
    ratios = {}
    for name, s in seconds.items():
        ratios[name] = statistics.median(
            ref / mine for ref, mine in zip(per_chunk[base], per_chunk[name])
        )
        print(
            f"  {name:38s} {args.num_texts / s:9.1f} texts/s  {n_tokens / s:9.0f} tok/s  x{ratios[name]:.2f}"
        )
    print(f"  max |logit difference| gpt2kit fp32 vs transformers: {max_diff:.2e}")
    results.add(
        "packed-fp32",
        ratios["gpt2kit fp32 (packed)"],
        "x",
        "packed GPT2ForTextClassification fp32 / transformers padded GPT2ForSequenceClassification",
    )
    if "gpt2kit bf16 (packed)" in ratios:
        results.add(
            "packed-bf16",
            ratios["gpt2kit bf16 (packed)"],
            "x",
            "packed bf16 / transformers padded fp32 (cross-dtype)",
        )
    results.add("logits-diff", max_diff, "", "max |logits - transformers' logits|, fp32")
    results.save(results_dir(args))


if __name__ == "__main__":
    main()
