"""Tokenizer batch padding: the package (Rust pads) vs the old tokenizer.py (Python pads).

Before the split, ``GPT2Tokenizer.__call__`` encoded with ``tokenizers`` and then padded,
truncated and built word-id/sequence-id/token tables in Python for every row. Now the
Rust backend pads and truncates, and those tables are read from the encodings only when
asked. This script loads the old module from git (``--old-rev``, default the commit that
still had ``src/gpt2kit/tokenizer.py``) next to the current package, in one process, and
alternates them call by call (A B A B ...); the figure is the median per call, the ratio
old / new (above 1 = the package is faster). Also against ``transformers``'
``GPT2TokenizerFast`` on the same files when it is installed.

Workloads (lines of tinyshakespeare when /work/shared/data/tinyshakespeare.txt exists,
else generated sentences): a batch of 256 lines with ``padding=True``; the same with
``truncation=True, max_length=32, padding="max_length"``; 64 passages with
``return_offsets_mapping=True`` padded to the longest.

Usage:
    python benchmarks/bench_tokenizer.py            # 30 interleaved repeats
    python benchmarks/bench_tokenizer.py --quick    # 2 repeats: smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import Results, add_results_argument, interleaved, results_dir

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
DATA = Path("/work/shared/data/tinyshakespeare.txt")
OLD_REV = "2b55e17"


def load_old(rev: str) -> Any:
    """The old single-file tokenizer module, imported from ``git show rev:...``."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:src/gpt2kit/tokenizer.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_tokenizer.py"
    assets = repr(str(ROOT / "src" / "gpt2kit" / "assets" / "gpt2"))
    source = source.replace(
        'Path(__file__).resolve().parent / "assets" / "gpt2"', f"Path({assets})"
    )
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_tokenizer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_tokenizer"] = module
    spec.loader.exec_module(module)
    return module


def lines(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    if DATA.is_file():
        pool = [ln for ln in DATA.read_text(encoding="utf-8").split("\n") if ln.strip()]
    else:
        words = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "on", "by"]
        pool = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) for _ in range(999)]
    return [rng.choice(pool) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats (smoke test)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--old-rev", default=OLD_REV, help="git revision with tokenizer.py")
    add_results_argument(parser)
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats

    from gpt2kit.tokenizer import ASSETS_DIR, GPT2Tokenizer

    new = GPT2Tokenizer()
    tokenizers: dict[str, Any] = {"new": new}
    try:
        tokenizers["old"] = load_old(args.old_rev).GPT2Tokenizer()
    except subprocess.CalledProcessError:  # a shallow clone without that commit
        print(f"(revision {args.old_rev} not in this clone: no old/new comparison)")
    try:
        import transformers

        hf = transformers.GPT2TokenizerFast.from_pretrained(str(ASSETS_DIR))
        hf.pad_token = hf.eos_token
        tokenizers["transformers"] = hf
    except ImportError:
        pass

    keys = tuple(
        f"{w}-{k}/new"
        for w in ("pad", "truncate-pad", "offsets")
        for k in ("old", "transformers")
        if k in tokenizers
    )
    results = Results("bench_tokenizer", keys, args)
    batch = lines(256, 0)
    passages = [" ".join(lines(8, i)) for i in range(64)]
    workloads: dict[str, tuple[list[str], dict[str, Any]]] = {
        "256 lines, padding=True": (batch, {"padding": True}),
        "256 lines, truncate+pad to 32": (
            batch,
            {"padding": "max_length", "truncation": True, "max_length": 32},
        ),
        "64 passages, offsets, padding=True": (
            passages,
            {"padding": True, "return_offsets_mapping": True},
        ),
    }
    for short, (name, (texts, kw)) in zip(("pad", "truncate-pad", "offsets"), workloads.items()):
        ref = new(texts, **kw)["input_ids"]
        for label, tok in tokenizers.items():
            assert tok(texts, **kw)["input_ids"] == ref, f"{label} disagrees on {name}"
        calls = {k: (lambda t=t, x=texts, o=kw: t(x, **o)) for k, t in tokenizers.items()}
        med = interleaved(calls, repeats)
        cells = "  ".join(f"{k} {v * 1e3:7.2f} ms" for k, v in med.items())
        ratio = ", ".join(
            f"{k}/new {med[k] / med['new']:.2f}x" for k in ("old", "transformers") if k in med
        )
        print(f"{name:38s} {cells}   {ratio}")
        for k in ("old", "transformers"):
            if k in med:
                what = f"{name}: {k} / the package, median seconds per call (above 1: faster)"
                results.add(f"{short}-{k}/new", med[k] / med["new"], "x", what)
    results.save(results_dir(args))


if __name__ == "__main__":
    main()
