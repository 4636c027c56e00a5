"""Import cost of gpt2kit: the gpt2kit modules a statement loads, and its wall time after
torch is already imported (torch's own 1-4 s is the same for every statement), as the
median of N fresh interpreters, the statements interleaved round by round, with byte code
cached (a warm-up round writes it) as an installed package has it.

Usage: `python scripts/import_cost.py [N] [SRC ...]` (N default 9): this checkout's
`src/`, or each `SRC` folder (e.g. an older commit's `git archive` copy) interleaved with
the others round by round. The before/after figures in docs/architecture.md come from it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

STATEMENTS = {
    "import gpt2kit": "import gpt2kit",
    "GPT2Config": "from gpt2kit import GPT2Config",
    "sequence head": "from gpt2kit import GPT2ForSequenceClassification",
    "LM head": "from gpt2kit import GPT2LMHeadModel",
    "LM head + generate": "from gpt2kit import GPT2LMHeadModel, generate",
    "pipeline": "from gpt2kit import pipeline",
}
PROBE = """
import sys, time
import torch
t = time.perf_counter()
exec({statement!r})
dt = time.perf_counter() - t
print(len([m for m in sys.modules if m == "gpt2kit" or m.startswith("gpt2kit.")]), dt)
"""


def main(rounds: int, sources: list[str]) -> None:
    results: dict[tuple[str, str], tuple[list[int], list[float]]] = {
        (src, k): ([], []) for src in sources for k in STATEMENTS
    }
    # Byte code cached as an installed package has it (PYTHONDONTWRITEBYTECODE would make
    # every run compile every module), in a scratch folder rather than the checkout; the
    # first round writes the cache and is not counted.
    cache = tempfile.mkdtemp(prefix="gpt2kit-import-cost-")
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for round_ in range(rounds + 1):
        for i, src in enumerate(sources):
            env = {**base, "PYTHONPATH": src, "PYTHONPYCACHEPREFIX": os.path.join(cache, str(i))}
            for label, statement in STATEMENTS.items():
                out = subprocess.run(
                    [sys.executable, "-c", PROBE.format(statement=statement)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                ).stdout.split()
                if round_:
                    results[src, label][0].append(int(out[0]))
                    results[src, label][1].append(float(out[1]))
    print(f"load average {os.getloadavg()[0]:.1f}; {rounds} rounds; time after `import torch`")
    for (src, label), (counts, times) in results.items():
        ms = [t * 1000 for t in times]
        print(
            f"{src}  {label:22s} {counts[0]:3d} gpt2kit modules   median "
            f"{statistics.median(ms):6.0f} ms   (min {min(ms):.0f}, max {max(ms):.0f})"
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    default = str(Path(__file__).resolve().parents[1] / "src")
    main(int(args[0]) if args else 9, args[1:] or [default])
