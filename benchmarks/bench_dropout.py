"""Training's dropout on CPU: gpt2kit's native pass vs `F.dropout`, forward + backward.

The same work in both: a fresh mask drawn from the default generator (the same mask, bit
for bit: `tests/test_native_dropout.py`), the output, and the gradient of a given upstream
gradient; interleaved repeat by repeat in one process. Shapes are a 124M model's at 8 x 128:
a residual `[8, 128, 768]` and an attention map `[8, 12, 128, 128]`, and SDPA with
`dropout_p=0.1` (its math path on CPU) against `attention_with_dropout` (the same ops with
the native dropout) at `[8, 12, 128, 64]`. Statistic: the median of the repeats.

    python benchmarks/bench_dropout.py --quick     # 2 repeats, small shapes: smoke test
    python benchmarks/bench_dropout.py             # 15 repeats
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from common import Results, add_results_argument, results_dir

from gpt2kit.nn import dropout as D


def timed(fn, *inputs: torch.Tensor) -> float:
    t = time.perf_counter()
    y = fn(*inputs)
    torch.autograd.grad(y, inputs, torch.ones_like(y))
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 repeats, small shapes")
    p.add_argument("--repeats", type=int, default=15)
    add_results_argument(p)
    args = p.parse_args()
    repeats = 2 if args.quick else args.repeats
    B, T = (2, 32) if args.quick else (8, 128)
    cases = {
        "residual": (
            "dropout 0.1 on a residual [B, T, 768], forward + backward: F.dropout / native",
            [torch.randn(B, T, 768, requires_grad=True)],
            lambda x: F.dropout(x, 0.1, True),
            lambda x: D.dropout(x, 0.1),
        ),
        "attention-map": (
            "dropout 0.1 on an attention map [B, 12, T, T], forward + backward: F.dropout / native",
            [torch.randn(B, 12, T, T, requires_grad=True)],
            lambda x: F.dropout(x, 0.1, True),
            lambda x: D.dropout(x, 0.1),
        ),
        "sdpa": (
            "causal attention with dropout 0.1 at [B, 12, T, 64], forward + backward: "
            "SDPA / attention_with_dropout",
            [torch.randn(B, 12, T, 64, requires_grad=True) for _ in range(3)],
            lambda q, k, v: F.scaled_dot_product_attention(
                q, k, v, dropout_p=0.1, is_causal=True, scale=0.125
            ),
            lambda q, k, v: D.attention_with_dropout(q, k, v, None, 0.1, True, 0.125),
        ),
    }
    results = Results("bench_dropout", tuple(cases), args)
    if not D.sdpa_reproduced():
        results.note("SDPA's math path is not reproduced here: the sdpa row is SDPA against itself")
    print(f"dropout, {torch.get_num_threads()} threads, median of {repeats} interleaved repeats")
    for key, (what, inputs, reference, ours) in cases.items():
        timed(reference, *inputs), timed(ours, *inputs)  # warm (the kernels' build, the check)
        times: dict[str, list[float]] = {"torch": [], "gpt2kit": []}
        for _ in range(repeats):
            times["torch"].append(timed(reference, *inputs))
            times["gpt2kit"].append(timed(ours, *inputs))
        med = {name: statistics.median(v) for name, v in times.items()}
        print(
            f"  {key:14s} torch {med['torch'] * 1e3:8.2f} ms   gpt2kit {med['gpt2kit'] * 1e3:8.2f} ms"
        )
        results.add(key, med["torch"] / med["gpt2kit"], "x", what)
    results.save(results_dir(args))


if __name__ == "__main__":
    main()
