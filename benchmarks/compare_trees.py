"""`bench_generation.py` on two source trees, interleaved: A B A B ..., medians per case.

Why: a change that must keep speed ("within 3% of main") is judged on a shared, noisy
machine, where two runs minutes apart differ by more than that. Each round runs this
folder's `bench_generation.py` once per tree (`PYTHONPATH=<tree>/src`, each in a fresh
process), in turn, so both see the same drift; the report gives, per case, the median
gpt2kit/transformers ratio and tokens/s of each tree and the median of the per-round
new/old tok/s ratios.

    python benchmarks/compare_trees.py --old /work/main --new . --rounds 3 -- --repeats 1
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).with_name("bench_generation.py")
ROW = re.compile(r"^(greedy|sample)(.*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x")


def run_once(tree: Path, bench_args: list[str]) -> dict[str, tuple[float, float]]:
    """{case: (gpt2kit tok/s, ratio to transformers)} from one run on `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    out = subprocess.run(
        [sys.executable, str(BENCH), *bench_args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[(m.group(1) + m.group(2)).strip()] = (float(m.group(3)), float(m.group(5)))
    if not rows:
        raise RuntimeError(f"no result rows in the output of {tree}:\n{out}")
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="baseline tree (has src/gpt2kit)")
    ap.add_argument("--new", type=Path, required=True, help="changed tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("bench_args", nargs="*", help="arguments for bench_generation.py (after --)")
    args = ap.parse_args(argv)
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {"old": [], "new": []}
    for r in range(args.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")  # (neither always first)
        for name in order:
            rows = run_once(getattr(args, name).resolve(), args.bench_args)
            runs[name].append(rows)
            print(
                f"round {r + 1} {name}: " + ", ".join(f"{k} {v[1]:.2f}x" for k, v in rows.items())
            )
            sys.stdout.flush()
    print(f"\nmedians of {args.rounds} interleaved rounds")
    print(
        f"{'case':32s} {'old ratio':>10s} {'new ratio':>10s} {'new/old':>8s} {'tok/s new/old':>14s}"
    )
    for case in runs["old"][0]:
        old_r = statistics.median(run[case][1] for run in runs["old"])
        new_r = statistics.median(run[case][1] for run in runs["new"])
        paired = statistics.median(
            n[case][0] / o[case][0] for o, n in zip(runs["old"], runs["new"], strict=True)
        )
        print(f"{case:32s} {old_r:9.2f}x {new_r:9.2f}x {new_r / old_r:8.3f} {paired:14.3f}")


if __name__ == "__main__":
    main()
