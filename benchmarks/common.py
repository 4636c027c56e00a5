"""What every benchmark shares: the one statistic, interleaving, the bandwidth bound, results.

- The statistic is the **median** of the interleaved repeats (A B A B ...), everywhere. A
  best-of would flatter whichever side happened to get one quiet moment; the median of
  paired runs on a shared machine is the figure that both sides earn alike.
- A **bound** is an upper bound on what any implementation can reach here, measured next to
  the run: the fastest read of as many bytes as a decoding step reads, on the same threads
  (`read_bandwidth`). A figure above 100% of it means the bound is wrong, and the scripts
  say so instead of printing it as a result.
- Each script records its figures through `Results`: one `RESULT key value unit` line per
  figure on stdout (the smoke test checks that every declared key is printed as a finite
  number) and, for full runs, `benchmarks/results/<script>.json` with the date, the
  versions, the machine and the command. The README's performance table is rendered from
  those files (`benchmarks/report.py`), so every figure in it is a committed script's
  latest run.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call (CUDA work included when a GPU is in use)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def interleaved(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    between: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Median seconds per call of each function, called in turn repeat by repeat.

    `between` runs before and after every timed call (e.g. a bandwidth sample), untimed.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if between is not None:
                between()
            times[name].append(timed(fn))
            if between is not None:
                between()
    return {name: statistics.median(t) for name, t in times.items()}


class ReadBandwidth:
    """Read-only memory bandwidth on the current threads: the bound of a decoding step.

    A batch-1 step must read every weight once, so tokens/s <= bandwidth / weight bytes for
    any implementation. The bandwidth is the fastest of several reads of a buffer of the
    weights' size (at least 64 MiB, on 2 MiB pages where Linux allows, as the decoder's
    arena): `torch.sum`, and on CPU a native read (`read_bound.c`) with 1, 2, 4 and 8
    sequential streams per thread on torch's threads. Why several: on some CPUs one stream
    per core does not saturate the memory system (a 2-vCPU Xeon here: `torch.sum` ~11 GB/s
    while the int8 decode kernel, four streams per thread, streamed ~15 GB/s); a bound
    slower than the kernel it bounds is no bound. The maximum of all samples of the run is
    taken: a shared machine's bandwidth drifts, and the maximum is the one that bounds. The
    same bytes, not a fixed large buffer: where a cache holds weights of that size (a 124
    MB int8 GPT-2 in a large L3), it holds the buffer too, and the bound stays a bound.
    """

    STREAMS = (1, 2, 4, 8)

    def __init__(self, nbytes: int, device: str = "cpu") -> None:
        n = max(nbytes, 64 * 2**20) // 4
        if device == "cpu":
            from gpt2kit import native

            self.buffer = native.huge_page_empty(n, torch.float32).fill_(1.0)
        else:
            self.buffer = torch.ones(n, dtype=torch.float32, device=device)
        self.native = _read_bound_lib() if device == "cpu" else None
        self.samples: list[float] = []
        self.sample()

    def sample(self, repeats: int = 3) -> float:
        reads: list[Callable[[], object]] = [lambda: self.buffer.sum()]
        if self.native is not None:
            ptr, nbytes, threads = (
                self.buffer.data_ptr(),
                self.buffer.numel() * 4,
                torch.get_num_threads(),
            )
            reads += [
                functools.partial(self.native.read_bound, ptr, nbytes, streams, threads)
                for streams in self.STREAMS
            ]
        best = float("inf")
        for _ in range(repeats):
            for read in reads:
                best = min(best, timed(read))
        rate = self.buffer.numel() * 4 / best
        self.samples.append(rate)
        return rate

    @property
    def peak(self) -> float:
        return max(self.samples)


def _read_bound_lib():  # -> ctypes.CDLL | None
    """`read_bound.c` built with the decode kernels' compiler and flags (cached by source
    hash in the kernels' cache folder); None without a compiler."""
    import ctypes
    import hashlib
    import subprocess

    from gpt2kit import native

    cc = native._compiler()
    if cc is None:
        return None
    source = Path(__file__).with_name("read_bound.c")
    key = hashlib.sha256(source.read_bytes() + " ".join([cc, *native.FLAGS]).encode()).hexdigest()
    target = native.cache_dir() / f"read_bound-{key[:16]}.so"
    if not target.exists():
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([cc, *native.FLAGS, str(source), "-o", str(tmp)], check=True)
        os.replace(tmp, target)
    lib = ctypes.CDLL(str(target))
    lib.read_bound.restype = ctypes.c_uint64
    lib.read_bound.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int]
    return lib


def bound_fraction(tokens_per_s: float, bandwidth: float, bytes_per_token: int) -> str:
    """`tokens_per_s` as a share of the bound, or a flag when the bound cannot be right."""
    share = tokens_per_s / (bandwidth / bytes_per_token)
    return f"{share:.0%}" if share <= 1.0 else f"{share:.0%} (BOUND EXCEEDED: bound wrong)"


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == (
                platform.processor() or platform.machine()
            ):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    info: dict[str, object] = {
        "cpu": cpu,
        # (a model name such as "AMD EPYC" covers CPUs from AVX2-only Zen 1 to AVX-512
        # Zen 4; the kernels' speeds follow the vector extensions)
        "isa": _isa(flags),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _isa(flags: set[str]) -> str:
    """The vector extensions that decide which kernels run: e.g. "AVX2", "AVX-512 VNNI
    BF16", "AVX-512 VNNI BF16 AMX"; "" where the flags are unknown (not x86 Linux)."""
    if not flags:
        return ""
    parts = ["AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"]
    if flags & {"avx512_vnni", "avx_vnni"}:
        parts.append("VNNI")
    if "avx512_bf16" in flags:
        parts.append("BF16")
    if "amx_tile" in flags:
        parts.append("AMX")
    return " ".join(parts)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "gpt2kit", "ctranslate2", "peft"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out


class Results:
    """The figures of one run: printed as `RESULT` lines, saved for full runs.

    `keys` declares every figure the script promises; `save` refuses to write a file with
    one missing, and the smoke test checks that each is printed as a finite number.
    """

    def __init__(self, script: str, keys: tuple[str, ...], args: argparse.Namespace) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.figures: dict[str, dict[str, object]] = {}
        self.notes: list[str] = []
        self.load_start = os.getloadavg()[0]
        print(f"RESULT-KEYS {' '.join(keys)}", flush=True)

    def add(self, key: str, value: float, unit: str, what: str) -> float:
        if key not in self.keys:
            raise KeyError(f"{self.script}: {key!r} is not among its declared result keys")
        value = float(value)
        self.figures[key] = {"value": value, "unit": unit, "what": what}
        print(f"RESULT {key} {value:.6g} {unit}  # {what}", flush=True)
        return value

    def note(self, text: str) -> None:
        self.notes.append(text)

    def save(self, directory: str | os.PathLike | None) -> Path | None:
        """Write `<directory>/<script>.json` (None: nothing written, e.g. `--quick` runs)."""
        if directory is None:
            return None
        missing = [k for k in self.keys if k not in self.figures]
        if missing:
            raise RuntimeError(f"{self.script}: no figure for {missing}")
        bad = [k for k, f in self.figures.items() if not math.isfinite(f["value"])]
        if bad:
            raise RuntimeError(f"{self.script}: non-finite figures {bad}")
        record = {
            "script": self.script,
            "command": " ".join(["python", f"benchmarks/{self.script}.py", *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "versions": versions(),
            "machine": {**machine(), "load_average_at_start": round(self.load_start, 2)},
            "statistic": "median of interleaved repeats",
            "figures": self.figures,
            "notes": self.notes,
        }
        path = Path(directory) / f"{self.script}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, path)
        print(f"results written to {path}")
        return path


def add_results_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results-dir",
        default=None,
        help="where to write <script>.json (default: benchmarks/results for full runs, "
        "nowhere for --quick)",
    )


def results_dir(args: argparse.Namespace) -> Path | None:
    if args.results_dir:
        return Path(args.results_dir)
    return None if getattr(args, "quick", False) else RESULTS_DIR
