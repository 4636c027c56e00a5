"""Generation speed: gpt2kit vs `transformers.generate`, same weights, same process, interleaved.

Figures (new tokens per second, best of `--repeats`):
- greedy, batch 1, prompt 16, exactly `--new` new tokens (min_new_tokens = max_new_tokens);
- sampling top-k 50, batch 8;
- gpt2kit with bf16 weights, batch 1, against transformers fp32;
- with `--compiled`: greedy batch 1 through the static cache and the compiled decode step
  (`cache_implementation="static"`, inductor on CPU), plain and with inductor's `freezing`
  (weights constant-folded, projections on oneDNN's packed weights); their one-off compile
  time and the resident-memory growth it brings are printed too.
Each is printed with its ratio to transformers and its fraction of this machine's
memory-bandwidth bound (batch-1 decoding reads every weight once per token, so
tokens/s <= bandwidth / weight bytes; bandwidth measured as a large tensor copy, once at
the start and again just before and after every timed run: "of bound" uses the larger
measurement next to the best run, "at start" the first one, "of peak" the highest of the
whole run, since a shared machine's bandwidth drifts). A copy's bandwidth counts its read
and write bytes, and writes cost the bus more than reads, so a read-only stream of weights
can beat the bound: figures above 100% are real.

    python benchmarks/bench_generation.py            # GPT-2 124M, random init, fp32 CPU
    python benchmarks/bench_generation.py --quick    # tiny config, a few seconds
    python benchmarks/bench_generation.py --compiled # + compiled rows (minutes of compile)
    python benchmarks/bench_generation.py --device cuda   # GPU, bf16: see below

On a GPU (`--device cuda`, bf16 weights in both libraries unless `--dtype float32`):
greedy batch 1 and top-k sampling batch 8, gpt2kit eager and with the decode step
captured as a CUDA graph (`cache_implementation="static"`, inductor `mode=
"reduce-overhead"`), against `transformers.generate` eager and, as its own best, with
its static cache and compiled step (`cache_implementation="static"`). The bound is the
GPU's copy bandwidth over the weight bytes (a batch-1 step reads every weight once).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from gpt2kit import GPT2Config, GPT2LMHeadModel
from gpt2kit.generation import generate


def bandwidth_bytes_per_s(size_mb: int = 256, repeats: int = 5) -> float:
    """Memory bandwidth from a large copy (read + write)."""
    src = torch.empty(size_mb * 2**20 // 4, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the weights read per decoding step (tied weights once; the position table is not read)."""
    seen = {id(p): p for p in model.parameters()}
    total = sum(p.numel() * p.element_size() for p in seen.values())
    wpe = model.transformer.wpe.weight
    return total - wpe.numel() * wpe.element_size()


def rss_mib() -> float:
    """Resident set size of this process (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def timed(fn) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def cuda_bandwidth_bytes_per_s(size_mb: int = 1024, repeats: int = 10) -> float:
    """GPU memory bandwidth from a large device-to-device copy (read + write)."""
    src = torch.ones(size_mb * 2**20 // 4, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    torch.cuda.synchronize()
    return 2 * src.numel() * 4 * repeats / (time.perf_counter() - t)


def run_cuda(ours, hf, cfg, args) -> None:
    """GPU figures: eager and graph-captured gpt2kit against transformers, same process."""
    import transformers

    dtype = getattr(torch, args.dtype)
    dev = torch.device(args.device)  # (cpu: a dry run of this function)
    ours.to(dev, dtype)
    hf.to(dev, dtype)
    on_gpu = dev.type == "cuda"
    bw = cuda_bandwidth_bytes_per_s() if on_gpu else bandwidth_bytes_per_s(64)
    bound = bw / weight_bytes(ours)
    name = torch.cuda.get_device_name() if on_gpu else "cpu"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {name}")
    print(
        f"{args.dtype} weights, {args.new} new tokens, prompt 16; batch-1 bound {bound:.0f} tok/s"
    )
    g = torch.Generator().manual_seed(0)
    p1 = torch.randint(0, cfg.vocab_size, (1, 16), generator=g).to(dev)
    p8 = torch.randint(0, cfg.vocab_size, (8, 16), generator=g).to(dev)
    n = args.new
    exact = dict(max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
    sample = dict(do_sample=True, top_k=50, **exact)
    captured = dict(cache_implementation="static")
    trees = dict(captured, compile_config={"mode": "reduce-overhead"})

    def run_hf(ids, **kw):
        with torch.no_grad():
            return hf.generate(ids, attention_mask=torch.ones_like(ids), **kw)

    cases = {
        "greedy b1 eager": (lambda: generate(ours, p1, **exact), lambda: run_hf(p1, **exact), 1),
        "greedy b1 captured": (
            lambda: generate(ours, p1, **captured, **exact),
            lambda: run_hf(p1, **exact),
            1,
        ),
        "greedy b1 graph trees": (  # torch's CUDA-graph trees instead of the decoder's graph
            lambda: generate(ours, p1, **trees, **exact),
            lambda: run_hf(p1, **exact),
            1,
        ),
        "sample b8 eager": (
            lambda: generate(ours, p8, seed=0, **sample),
            lambda: run_hf(p8, **sample),
            8,
        ),
        "sample b8 captured": (
            lambda: generate(ours, p8, seed=0, **captured, **sample),
            lambda: run_hf(p8, **sample),
            8,
        ),
    }
    t_compile = timed(lambda: generate(ours, p1, **captured, **exact))  # compile + record
    same = torch.equal(generate(ours, p1, **captured, **exact), generate(ours, p1, **exact))
    print(f"greedy b1: first captured call {t_compile:.1f} s; captured ids == eager ids: {same}")
    print(
        f"\n{'case':22s} {'gpt2kit tok/s':>14s} {'hf tok/s':>10s} {'ratio':>7s} {'of bound':>9s} {'1st call':>9s}"
    )
    best_b1 = 0.0
    for name, (ours_fn, hf_fn, batch) in cases.items():
        t_first = timed(ours_fn)  # captured: compiles and records the graph
        hf_fn()
        t_ours = t_hf = float("inf")
        for _ in range(args.repeats):  # interleaved
            t_ours = min(t_ours, timed(ours_fn))
            t_hf = min(t_hf, timed(hf_fn))
        ours_tps, hf_tps = batch * n / t_ours, batch * n / t_hf
        frac = f"{ours_tps / bound:8.0%}" if batch == 1 else "      -"
        if batch == 1:
            best_b1 = max(best_b1, ours_tps)
        print(
            f"{name:22s} {ours_tps:14.1f} {hf_tps:10.1f} {ours_tps / hf_tps:6.2f}x {frac} {t_first:8.1f}s",
            flush=True,
        )
    if args.skip_hf_static:
        return
    # transformers' own captured path (static cache, compiled step) as a second reference.
    try:
        t_first = timed(lambda: run_hf(p1, **captured, **exact))
        t = min(timed(lambda: run_hf(p1, **captured, **exact)) for _ in range(args.repeats))
        print(
            f"transformers greedy b1 static+compiled: {n / t:.1f} tok/s (first call "
            f"{t_first:.1f} s); gpt2kit's best b1 is {best_b1 * t / n:.2f}x that"
        )
    except Exception as exc:  # a reference that fails is reported, not fatal
        print(f"transformers static/compiled generate failed: {type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny config, few tokens (smoke run)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--new", type=int, default=128, help="new tokens per prompt")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument(
        "--compiled",
        action="store_true",
        help="add greedy b1 rows with the static cache and torch.compile'd decode step",
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda: the GPU figures)")
    ap.add_argument("--dtype", default="bfloat16", help="weights dtype on cuda")
    ap.add_argument(
        "--skip-hf-static", action="store_true", help="cuda: skip transformers' compiled path"
    )
    args = ap.parse_args(argv)
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        cfg = GPT2Config(
            n_layer=2,
            n_embd=64,
            n_head=4,
            vocab_size=1000,
            n_positions=256,
            bos_token_id=999,
            eos_token_id=999,
        )
        args.new, args.repeats = min(args.new, 32), 1
        if not args.threads:  # tiny ops: extra threads only spin on a shared machine
            torch.set_num_threads(1)
    else:
        cfg = GPT2Config.from_name("gpt2")
    prompt_len = 16

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        hf_cfg = transformers.GPT2Config(
            **{
                k: v
                for k, v in cfg.to_dict().items()
                if k not in ("gpt2kit_version", "architectures", "model_type")
            }
        )
        hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
        hf.save_pretrained(Path(tmp) / "m")
        ours = GPT2LMHeadModel.from_pretrained(Path(tmp) / "m")
    if args.device == "cuda":
        args.repeats = max(args.repeats, 3)
        return run_cuda(ours, hf, cfg, args)
    ours_bf16 = GPT2LMHeadModel(cfg).eval()
    ours_bf16.load_state_dict(ours.state_dict())
    ours_bf16.to(torch.bfloat16)

    bw = bandwidth_bytes_per_s(64 if args.quick else 256)
    bound_fp32 = bw / weight_bytes(ours)
    bound_bf16 = bw / weight_bytes(ours_bf16)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"config: {cfg.n_layer} layers, width {cfg.n_embd}, vocab {cfg.vocab_size}; {args.new} new tokens, prompt {prompt_len}"
    )
    print(
        f"memory bandwidth {bw / 1e9:.1f} GB/s -> batch-1 bound {bound_fp32:.1f} tok/s fp32, {bound_bf16:.1f} tok/s bf16"
    )

    g = torch.Generator().manual_seed(0)
    p1 = torch.randint(0, cfg.vocab_size, (1, prompt_len), generator=g)
    p8 = torch.randint(0, cfg.vocab_size, (8, prompt_len), generator=g)
    n = args.new
    exact = dict(max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
    sample = dict(do_sample=True, top_k=50, **exact)

    def run_hf(ids, **kw):
        with torch.no_grad():
            return hf.generate(ids, attention_mask=torch.ones_like(ids), **kw)

    cases = {
        "greedy b1 fp32": (
            lambda: generate(ours, p1, **exact),
            lambda: run_hf(p1, do_sample=False, **exact),
            1,
        ),
        "sample b8 fp32": (
            lambda: generate(ours, p8, seed=0, **sample),
            lambda: run_hf(p8, **sample),
            8,
        ),
        "greedy b1 bf16 (vs hf fp32)": (
            lambda: generate(ours_bf16, p1, **exact),
            lambda: run_hf(p1, do_sample=False, **exact),
            1,
        ),
    }
    compile_times: dict[str, tuple[float, float]] = {}
    if args.compiled:
        static = dict(cache_implementation="static", **exact)
        frozen = dict(compile_config={"options": {"freezing": True}}, **static)
        for name, kw in (("compiled", static), ("compiled+freezing", frozen)):
            rss0 = rss_mib()
            t_first = timed(lambda kw=kw: generate(ours, p1, **kw))  # builds and compiles
            compile_times[name] = (t_first, rss_mib() - rss0)
            cases[f"greedy b1 fp32 {name}"] = (
                lambda kw=kw: generate(ours, p1, **kw),
                lambda: run_hf(p1, do_sample=False, **exact),
                1,
            )
    # Sanity: both produce exactly n new tokens.
    assert generate(ours, p1, **exact).shape[1] == prompt_len + n
    assert run_hf(p1, do_sample=False, **exact).shape[1] == prompt_len + n

    # A shared machine's bandwidth drifts within a run, so each timed repeat is paired
    # with copy-bandwidth measurements taken just before and just after it; "of bound"
    # uses the larger of the two next to the best repeat, "at start" the one measured
    # above, "of peak" the highest seen in the whole run (the strictest of the three).
    results = {}
    samples = []

    def bracketed(fn) -> tuple[float, float]:
        before = bandwidth_bytes_per_s(64)
        t = timed(fn)
        after = bandwidth_bytes_per_s(64)
        samples.extend((before, after))
        return t, max(before, after)

    for name, (ours_fn, hf_fn, batch) in cases.items():
        ours_fn(), hf_fn()  # warm-up
        t_ours = t_hf = float("inf")
        bw_ours = bw_hf = bw
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            t, here = bracketed(ours_fn)
            if t < t_ours:
                t_ours, bw_ours = t, here
            t, here = bracketed(hf_fn)
            if t < t_hf:
                t_hf, bw_hf = t, here
        results[name] = (batch * n / t_ours, batch * n / t_hf, bw_ours, bw_hf)

    peak = max(samples + [bw])
    print(
        f"\n{'case':34s} {'gpt2kit tok/s':>14s} {'hf tok/s':>10s} {'ratio':>7s} "
        f"{'of bound':>9s} {'at start':>9s} {'of peak':>8s}"
    )
    for name, (ours_tps, hf_tps, bw_ours, _) in results.items():
        weights = weight_bytes(ours_bf16) if "bf16" in name else weight_bytes(ours)
        start = bound_bf16 if "bf16" in name else bound_fp32
        frac = (
            f"{ours_tps / (bw_ours / weights):8.0%} {ours_tps / start:8.0%} "
            f"{ours_tps / (peak / weights):7.0%}"
            if name.startswith("greedy")
            else "       -        -       -"
        )
        print(f"{name:34s} {ours_tps:14.1f} {hf_tps:10.1f} {ours_tps / hf_tps:6.2f}x {frac}")
    _, hf_b1, _, bw_hf_b1 = results["greedy b1 fp32"]
    print(
        f"(transformers fp32 greedy b1 is {hf_b1 / (bw_hf_b1 / weight_bytes(ours)):.0%} of the "
        f"fp32 bound, {hf_b1 / bound_fp32:.0%} at start, {hf_b1 / (peak / weight_bytes(ours)):.0%} "
        f"of peak; bandwidth next to the runs "
        f"{min(samples) / 1e9:.1f}-{max(samples) / 1e9:.1f} GB/s)"
    )
    for name, (t_first, rss_rise) in compile_times.items():
        eager_tps = results["greedy b1 fp32"][0]
        tps = results[f"greedy b1 fp32 {name}"][0]
        print(
            f"{name}: first call (compile + run) {t_first:.1f} s, resident memory "
            f"+{rss_rise:.0f} MiB; {tps / eager_tps:.2f}x the eager gpt2kit greedy b1"
        )


if __name__ == "__main__":
    sys.exit(main())
