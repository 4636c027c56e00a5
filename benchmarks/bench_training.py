"""Training throughput: gpt2kit Trainer vs transformers Trainer vs a bare PyTorch loop.

Same model shape, data, batch, steps and optimizer (fused AdamW, clipping at 1.0, fp32) in
one process, interleaved round by round so machine load hits all three alike. Prints
tokens/s per runner and the ratios:

- gpt2kit / transformers tokens/s (budget: >= 1.2x; reported, not asserted),
- Trainer overhead: bare loop / gpt2kit Trainer (budget: <= 5% slower).

transformers' Trainer needs `accelerate` (`pip install accelerate`).

    python benchmarks/bench_training.py --quick          # < 20 s smoke run
    python benchmarks/bench_training.py                  # 4 layers x 256, 50257 vocab
    python benchmarks/bench_training.py --preset 124m --steps 10 --threads 16
    python benchmarks/bench_training.py --preset 124m --batch 16 --seq 1024 --bf16  # GPU

`--bf16` trains under bf16 autocast in all three (`bf16=True` in both Trainers); on a GPU
the script also prints each runner's model FLOPs utilization (MFU: 6 x parameters +
attention FLOPs per token, over the GPU's dense bf16 peak, `--peak-tflops`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from common import Results, add_results_argument, results_dir

PRESETS = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=4),
    "small": dict(n_layer=4, n_embd=256, n_head=4),
    "124m": dict(n_layer=12, n_embd=768, n_head=12),
}


def make_data(n: int, seq: int, vocab: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (n, seq), generator=g)
    return [{"input_ids": row, "labels": row} for row in ids]


def run_gpt2kit(shape: dict, data: list, steps: int, batch: int, lr: float, bf16: bool) -> float:
    from gpt2kit import GPT2Config, GPT2LMHeadModel
    from gpt2kit.training import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**shape))
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            out,
            max_steps=steps,
            per_device_train_batch_size=batch,
            learning_rate=lr,
            logging_steps=10**9,
            save_at_end=False,
            disable_tqdm=True,
            report_to_tensorboard=False,
            plot=False,
            handle_signals=False,
            bf16=bf16,
        )
        trainer = Trainer(model, args, data)
        t0 = time.perf_counter()
        trainer.train()
        return time.perf_counter() - t0


def run_transformers(
    shape: dict, data: list, steps: int, batch: int, lr: float, bf16: bool
) -> float:
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.GPT2Config(**shape)
    model = transformers.GPT2LMHeadModel(config)
    with tempfile.TemporaryDirectory() as out:
        args = transformers.TrainingArguments(
            output_dir=out,
            max_steps=steps,
            per_device_train_batch_size=batch,
            learning_rate=lr,
            optim="adamw_torch_fused",
            max_grad_norm=1.0,
            logging_strategy="no",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            bf16=bf16,
        )
        trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
        t0 = time.perf_counter()
        trainer.train()
        return time.perf_counter() - t0


def run_bare(shape: dict, data: list, steps: int, batch: int, lr: float, bf16: bool) -> float:
    """The floor: a hand-written loop over gpt2kit's model (same optimizer and schedule)."""
    from gpt2kit import GPT2Config, GPT2LMHeadModel
    from gpt2kit.training import create_optimizer, create_scheduler

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = GPT2LMHeadModel(GPT2Config(**shape)).to(device)
    t0 = time.perf_counter()
    opt = create_optimizer(model, lr=lr)
    sched = create_scheduler(opt, "linear", 0, steps)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()
    model.train()
    for step in range(steps):
        rows = [data[i] for i in perm[(step * batch) % len(data) :][:batch]]
        ids = torch.stack([r["input_ids"] for r in rows]).to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # the Trainers read the loss every step too
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=PRESETS, default="small")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument(
        "--rounds", type=int, default=3, help="interleaved timed rounds (after one warmup)"
    )
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="tiny model, 3 steps, 1 round: a smoke run")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast in every runner")
    p.add_argument(
        "--peak-tflops", type=float, default=989.0, help="GPU dense bf16 peak for MFU (H100 SXM)"
    )
    add_results_argument(p)
    args = p.parse_args()
    results = Results(
        "bench_training" + ("_bf16" if args.bf16 else ""), ("trainer", "overhead"), args
    )
    if args.quick:
        args.preset, args.steps, args.batch, args.seq, args.rounds = "tiny", 3, 4, 32, 1
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = dict(PRESETS[args.preset], vocab_size=50257, n_positions=max(args.seq, 128))
    data = make_data(args.batch * args.steps, args.seq, 50257)
    tokens = args.steps * args.batch * args.seq
    runners = {"gpt2kit Trainer": run_gpt2kit, "bare loop": run_bare}
    try:
        import accelerate  # noqa: F401
        import transformers  # noqa: F401

        runners["transformers Trainer"] = run_transformers
    except ImportError as err:
        print(f"transformers Trainer skipped: {err} (pip install accelerate transformers)")
    print(
        f"model {args.preset} {PRESETS[args.preset]}, batch {args.batch} x {args.seq} tokens, "
        f"{args.steps} steps, {torch.get_num_threads()} threads, "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}, fused AdamW, "
        f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}"
    )
    times: dict[str, list[float]] = {name: [] for name in runners}
    for rnd in range(args.rounds + 1):  # round 0 warms up (allocator, kernels, imports)
        for name, fn in runners.items():
            seconds = fn(shape, data, args.steps, args.batch, 1e-4, args.bf16)
            if rnd > 0 or args.rounds == 0:
                times[name].append(seconds)
    # the median of the interleaved rounds, as in every script here (benchmarks/common.py)
    print(f"{'runner':22s} {'median s':>9s} {'tokens/s':>10s}  rounds")
    rate = {}
    for name, ts in times.items():
        rate[name] = tokens / statistics.median(ts)
        rounds = " ".join(f"{t:.2f}" for t in ts)
        print(f"{name:22s} {statistics.median(ts):9.3f} {rate[name]:10.0f}  {rounds}")
    if "transformers Trainer" in rate:
        ratio = rate["gpt2kit Trainer"] / rate["transformers Trainer"]
        print(f"gpt2kit / transformers Trainer: {ratio:.2f}x")
        results.add("trainer", ratio, "x", "gpt2kit Trainer / transformers.Trainer tokens/s")
    overhead = rate["bare loop"] / rate["gpt2kit Trainer"] - 1
    print(f"gpt2kit Trainer overhead vs bare loop: {overhead * 100:+.1f}%")
    results.add("overhead", overhead, "", "gpt2kit Trainer time over a bare loop, minus 1")
    if torch.cuda.is_available():
        flops = flops_per_token(shape, args.seq)
        for name, r in rate.items():
            print(f"{name}: MFU {r * flops / (args.peak_tflops * 1e12):.1%}")
            results.note(f"{name}: MFU {r * flops / (args.peak_tflops * 1e12):.1%}")
    results.save(results_dir(args))


def flops_per_token(shape: dict, seq: int) -> float:
    """Training FLOPs per token: 6 x parameters (embeddings included: the tied LM head is a
    full matmul) + attention scores and values, 6 x 2 x layers x seq x width (PaLM, app. B)."""
    d, layers, vocab = shape["n_embd"], shape["n_layer"], shape["vocab_size"]
    params = layers * 12 * d * d + vocab * d
    return 6 * params + 12 * layers * seq * d


if __name__ == "__main__":
    main()
