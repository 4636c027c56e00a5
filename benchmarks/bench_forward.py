"""gpt2kit vs `transformers`: forward throughput, training step, peak memory, bf16 inference.

Both models are the 124M GPT-2 (`GPT2Config.from_name("gpt2")`), randomly initialized with
the SAME weights (gpt2kit saves, `transformers` loads the folder), fp32, on the CPU, in one
process. Each measurement alternates the two libraries repeat by repeat (A B A B ...), so
load changes on a shared machine hit both alike; the figure is the median of the repeats and
the ratio is gpt2kit / transformers for throughput, transformers / gpt2kit for memory.

What is measured:
- forward: `model(input_ids)` under `torch.no_grad()`, eval mode, logits for every position;
  tokens/s at batch 8 x 128 and 1 x 1024. `transformers` uses `attn_implementation="sdpa"`
  and `use_cache=False`: gpt2kit's forward builds no cache unless asked, so neither does the
  reference (its default would build and return one, extra work and memory).
- train step: forward with labels + backward + `AdamW.step()` + `zero_grad` at 8 x 128.
- peak memory: each (library, workload) runs in a fresh subprocess; after the model is built
  and warmed up with a 1-token forward, the kernel's peak-RSS mark is reset
  (`/proc/self/clear_refs`), and the figure is the peak resident set during the workload
  (`VmHWM`) minus the resident set before it. It counts everything the workload
  allocates (activations, gradients, optimizer state), which is what a user pays.
- bf16: gpt2kit loaded with `dtype=torch.bfloat16` vs `transformers` fp32 at 8 x 128, plus
  the max |logits_bf16 - logits_fp32| of gpt2kit against its own fp32 run.

Usage:
    python benchmarks/bench_forward.py            # full run (minutes on a laptop CPU)
    python benchmarks/bench_forward.py --quick    # tiny model, one repeat, no memory: smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import Results, add_results_argument, interleaved, results_dir

from gpt2kit.config import GPT2Config
from gpt2kit.models.lm import GPT2LMHeadModel


def shapes(quick: bool) -> dict[str, tuple[int, int]]:
    """(batch, tokens) of each workload; `--quick` shrinks them to a smoke test."""
    if quick:
        return {"small": (2, 32), "long": (1, 128)}
    return {"small": (8, 128), "long": (1, 1024)}


def build_config(quick: bool) -> GPT2Config:
    if quick:
        return GPT2Config(
            n_layer=2,
            n_embd=64,
            n_head=4,
            vocab_size=500,
            n_positions=1024,
            bos_token_id=0,
            eos_token_id=0,
        )
    return GPT2Config.from_name("gpt2")


def build_pair(config: GPT2Config, folder: Path, dtype: torch.dtype = torch.float32):
    """(gpt2kit model, transformers model) with the same weights, eval mode."""
    import transformers

    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    ours = GPT2LMHeadModel.from_pretrained(folder, dtype=dtype)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="sdpa").eval()
    return ours, theirs


def random_ids(config: GPT2Config, batch: int, seq: int) -> torch.Tensor:
    return torch.randint(
        0, config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(1)
    )


def forward_fn(model, ids):
    # `use_cache=False`: the same work in both (gpt2kit builds no cache unless asked)
    def run():
        with torch.no_grad():
            model(ids, use_cache=False)

    return run


def train_step_fn(model, ids):
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run():
        model(ids, labels=ids, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


def report(label: str, ours: float, theirs: float, unit: str, higher_is_better: bool = True):
    ours, theirs = max(ours, 1e-3), max(theirs, 1e-3)  # a tiny model may not raise the peak at all
    ratio = ours / theirs if higher_is_better else theirs / ours
    print(
        f"{label:<34} gpt2kit {ours:>10.1f} {unit:<9} transformers {theirs:>10.1f} {unit:<9} ratio {ratio:.2f}x"
    )
    return ratio


# -- peak memory, one subprocess per measurement ----------------------------------------------
def memory_child(library: str, workload: str, quick: bool, folder: str) -> None:
    """Run in a fresh process: print the peak-RSS rise (MiB) of one workload as JSON."""
    import transformers

    config = build_config(quick)
    if library == "gpt2kit":
        model = GPT2LMHeadModel.from_pretrained(folder)
    else:
        model = transformers.GPT2LMHeadModel.from_pretrained(
            folder, attn_implementation="sdpa"
        ).eval()
    batch, seq = shapes(quick)["long" if workload == "forward-long" else "small"]
    ids = random_ids(config, batch, seq)
    with torch.no_grad():
        model(ids[:, :1])
    fn = train_step_fn(model, ids) if workload == "train-small" else forward_fn(model, ids)
    gc.collect()
    before = _reset_peak_rss()
    fn()
    print(json.dumps({"peak_rise_mib": (_peak_rss_kib() - before) / 1024}))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; return that RSS in KiB.

    Without the reset, the peak of loading the checkpoint (weights twice in memory) would
    hide any workload smaller than it. Falls back to `ru_maxrss` where /proc is not Linux's.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss_kib() -> int:
    try:
        return _status_kib("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def measure_memory(library: str, workload: str, quick: bool, folder: Path) -> float:
    cmd = [sys.executable, __file__, "--memory-child", library, workload, str(folder)]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rise_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, one repeat (smoke test)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory figures")
    parser.add_argument("--memory-child", nargs=3, metavar=("LIBRARY", "WORKLOAD", "FOLDER"))
    add_results_argument(parser)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child[:2], args.quick, args.memory_child[2])
        return
    repeats = args.repeats or (1 if args.quick else 3)
    config = build_config(args.quick)
    sizes = shapes(args.quick)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"model {config.n_layer}x{config.n_embd}, fp32 CPU, {repeats} interleaved repeats, "
        f"workloads (batch, tokens): {sizes}"
    )

    speed = ("forward-small", "forward-long", "train-small", "bf16-forward-small", "logits-diff")
    memory = ("memory-forward-small", "memory-forward-long", "memory-train-small")
    keys = (() if args.memory_only else speed) + (
        () if args.quick and not args.memory_only else memory
    )
    results = Results("bench_forward", keys, args)

    def compare(name, label, fns, tokens):
        t = interleaved(fns, repeats)
        ratios[name] = report(label, tokens / t["ours"], tokens / t["theirs"], "tok/s")
        results.add(name, ratios[name], "x", f"{label}: gpt2kit / transformers")

    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        if args.memory_only:
            torch.manual_seed(0)
            GPT2LMHeadModel(config).save_pretrained(folder)
        else:
            ours, theirs = build_pair(config, folder)
            for kind, (batch, seq) in sizes.items():
                ids = random_ids(config, batch, seq)
                fns = {"ours": forward_fn(ours, ids), "theirs": forward_fn(theirs, ids)}
                compare(f"forward-{kind}", f"forward {batch}x{seq} (tok/s)", fns, batch * seq)

            batch, seq = sizes["small"]
            ids = random_ids(config, batch, seq)
            with torch.no_grad():
                err = (ours(ids).logits - theirs(ids).logits).abs().max().item()
            print(f"{'fp32 max |logits diff| vs transformers':<34} {err:.2e}")
            results.add("logits-diff", err, "", "fp32 max |logits - transformers' logits|")
            fns = {"ours": train_step_fn(ours, ids), "theirs": train_step_fn(theirs, ids)}
            compare("train-small", f"train step {batch}x{seq} (tok/s)", fns, batch * seq)

            del ours, theirs
            ours_fp32, theirs = build_pair(config, folder)
            ours_bf16 = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.bfloat16)
            fns = {"ours": forward_fn(ours_bf16, ids), "theirs": forward_fn(theirs, ids)}
            compare(
                "bf16-forward-small", f"bf16 fwd {batch}x{seq} vs fp32 (tok/s)", fns, batch * seq
            )
            with torch.no_grad():
                bf16_err = (
                    (ours_bf16(ids).logits.float() - ours_fp32(ids).logits).abs().max().item()
                )
            print(f"{'bf16 max |logits - fp32 logits|':<34} {bf16_err:.3f}")
            del ours_fp32, ours_bf16, theirs

        # Each memory figure costs a fresh process (imports included): skipped by --quick.
        for workload in (
            ()
            if args.quick and not args.memory_only
            else ("forward-small", "forward-long", "train-small")
        ):
            mine = measure_memory("gpt2kit", workload, args.quick, folder)
            other = measure_memory("transformers", workload, args.quick, folder)
            ratios[f"memory-{workload}"] = report(
                f"peak RSS rise {workload} (MiB)", mine, other, "MiB", higher_is_better=False
            )
            results.add(
                f"memory-{workload}",
                ratios[f"memory-{workload}"],
                "x",
                f"peak RSS rise {workload}: transformers / gpt2kit ({mine:.0f} vs {other:.0f} MiB)",
            )

    budget = {
        "forward-small": 1.05,
        "forward-long": 1.05,
        "train-small": 1.1,
        "bf16-forward-small": 3.0,
        "memory-forward-small": 1.0,
        "memory-forward-long": 1.0,
        "memory-train-small": 1.0,
    }
    print("\nbudget (ratio >= target; memory ratio = transformers / gpt2kit):")
    for name, target in budget.items():
        if name not in ratios:
            continue
        verdict = "ok" if ratios[name] >= target else "MISSED"
        print(f"  {name:<22} {ratios[name]:.2f}x  target {target:.2f}x  {verdict}")
    results.save(results_dir(args))


if __name__ == "__main__":
    main()
