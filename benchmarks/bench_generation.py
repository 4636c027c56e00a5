"""Generation speed: gpt2kit vs `transformers.generate`, same weights, same process, interleaved.

Figures (new tokens per second, the median of `--repeats` interleaved repeats):
- greedy, batch 1, prompt 16, exactly `--new` new tokens (min_new_tokens = max_new_tokens);
- sampling top-k 50, batch 8;
- gpt2kit with bf16 weights, batch 1, against transformers fp32;
- with `--compiled`: greedy batch 1 through the static cache and the compiled decode step
  (`cache_implementation="static"`, inductor on CPU), plain and with inductor's `freezing`
  (weights constant-folded, projections on oneDNN's packed weights); their one-off compile
  time and the resident-memory growth it brings are printed too.
Each is printed with its ratio to transformers and, for batch 1, its share of this
machine's memory-bandwidth bound: a batch-1 step reads every weight once, so no
implementation exceeds tokens/s = read bandwidth / weight bytes. The read bandwidth is the
fastest `sum` over a buffer of the weights' size on the same threads, sampled before and
after every timed call; the bound uses the highest sample of the run (bandwidth drifts on a
shared machine, and the highest is the one that bounds). A share above 100% would mean the
bound is wrong, and is printed as such. Top-k sampling draws among the k candidates
(`transformers` sorts the whole vocabulary): part of the b8 ratio is that algorithmic
difference, not kernel speed. The bf16 row is gpt2kit bf16 against `transformers` fp32:
a cross-dtype row, labelled as one.

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
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from common import (
    ReadBandwidth,
    Results,
    add_results_argument,
    bound_fraction,
    interleaved,
    results_dir,
    timed,
)

from gpt2kit import GPT2Config, GPT2LMHeadModel
from gpt2kit.generation import generate


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


CUDA_KEYS = tuple(
    f"cuda-{case}{suffix}"
    for case in (
        "greedy-b1-eager",
        "greedy-b1-captured",
        "greedy-b1-graph-trees",
        "sample-b8-eager",
        "sample-b8-captured",
    )
    for suffix in ("", "-ratio")
)


def run_cuda(ours, hf, cfg, args) -> None:
    """GPU figures: eager and graph-captured gpt2kit against transformers, same process."""
    import transformers

    results = Results("bench_generation_cuda", CUDA_KEYS, args)
    dtype = getattr(torch, args.dtype)
    dev = torch.device(args.device)  # (cpu: a dry run of this function)
    ours.to(dev, dtype)
    hf.to(dev, dtype)
    on_gpu = dev.type == "cuda"
    bandwidth = ReadBandwidth(weight_bytes(ours), device=args.device)
    bound = bandwidth.peak / weight_bytes(ours)
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
        t_ours, t_hf = [], []
        for _ in range(args.repeats):  # interleaved
            bandwidth.sample()
            t_ours.append(timed(ours_fn))
            t_hf.append(timed(hf_fn))
        ours_tps = batch * n / statistics.median(t_ours)
        hf_tps = batch * n / statistics.median(t_hf)
        frac = bound_fraction(ours_tps, bandwidth.peak, weight_bytes(ours)) if batch == 1 else "-"
        if batch == 1:
            best_b1 = max(best_b1, ours_tps)
        print(
            f"{name:22s} {ours_tps:14.1f} {hf_tps:10.1f} {ours_tps / hf_tps:6.2f}x {frac:>9s} {t_first:8.1f}s",
            flush=True,
        )
        key = "cuda-" + name.replace(" ", "-")
        results.add(key, ours_tps, "tok/s", f"{name}: gpt2kit tokens/s ({args.dtype})")
        results.add(key + "-ratio", ours_tps / hf_tps, "x", f"{name}: gpt2kit / transformers eager")
    if not args.skip_hf_static:
        # transformers' own captured path (static cache, compiled step) as a second reference.
        try:
            t_first = timed(lambda: run_hf(p1, **captured, **exact))
            t = statistics.median(
                timed(lambda: run_hf(p1, **captured, **exact)) for _ in range(args.repeats)
            )
            print(
                f"transformers greedy b1 static+compiled: {n / t:.1f} tok/s (first call "
                f"{t_first:.1f} s); gpt2kit's fastest b1 row is {best_b1 * t / n:.2f}x that"
            )
            results.note(f"transformers greedy b1 static+compiled {n / t:.1f} tok/s")
        except Exception as exc:  # a reference that fails is reported, not fatal
            print(f"transformers static/compiled generate failed: {type(exc).__name__}: {exc}")
    results.save(results_dir(args))


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
    add_results_argument(ap)
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

    keys = ["greedy-b1", "sample-b8", "bf16-greedy-b1", "greedy-b1-tok-s", "greedy-b1-of-bound"]
    keys += ["hf-greedy-b1-of-bound"]
    if args.compiled:
        keys += ["compiled-greedy-b1", "compiled+freezing-greedy-b1"]
    results = Results("bench_generation", tuple(keys), args)
    bandwidth = ReadBandwidth(weight_bytes(ours))
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"config: {cfg.n_layer} layers, width {cfg.n_embd}, vocab {cfg.vocab_size}; {args.new} new tokens, prompt {prompt_len}"
    )
    print(
        f"read bandwidth at start {bandwidth.peak / 1e9:.1f} GB/s -> batch-1 bound "
        f"{bandwidth.peak / weight_bytes(ours):.1f} tok/s fp32"
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

    # Interleaved repeats (gpt2kit, transformers, gpt2kit, ...), a read-bandwidth sample
    # before and after each timed call; the figure is the median.
    measured = {}
    for name, (ours_fn, hf_fn, batch) in cases.items():
        t = interleaved({"ours": ours_fn, "hf": hf_fn}, args.repeats, between=bandwidth.sample)
        measured[name] = (batch * n / t["ours"], batch * n / t["hf"])

    peak = bandwidth.peak
    print(f"\n{'case':34s} {'gpt2kit tok/s':>14s} {'hf tok/s':>10s} {'ratio':>7s} {'of bound':>9s}")
    for name, (ours_tps, hf_tps) in measured.items():
        weights = weight_bytes(ours_bf16) if "bf16" in name else weight_bytes(ours)
        frac = bound_fraction(ours_tps, peak, weights) if name.startswith("greedy") else "-"
        print(f"{name:34s} {ours_tps:14.1f} {hf_tps:10.1f} {ours_tps / hf_tps:6.2f}x {frac:>9s}")
    samples = bandwidth.samples
    print(f"(read bandwidth next to the runs {min(samples) / 1e9:.1f}-{peak / 1e9:.1f} GB/s)")
    b1, hf_b1 = measured["greedy b1 fp32"]
    results.add("greedy-b1", b1 / hf_b1, "x", "greedy b1 fp32: gpt2kit / transformers tokens/s")
    results.add("greedy-b1-tok-s", b1, "tok/s", "greedy b1 fp32: gpt2kit tokens/s")
    results.add(
        "greedy-b1-of-bound",
        b1 / (peak / weight_bytes(ours)),
        "",
        "greedy b1 fp32: gpt2kit's share of the read-bandwidth bound",
    )
    results.add(
        "hf-greedy-b1-of-bound",
        hf_b1 / (peak / weight_bytes(ours)),
        "",
        "greedy b1 fp32: transformers' share of the read-bandwidth bound",
    )
    ours_b8, hf_b8 = measured["sample b8 fp32"]
    results.add(
        "sample-b8",
        ours_b8 / hf_b8,
        "x",
        "top-k 50 sampling b8 fp32: gpt2kit / transformers tokens/s (gpt2kit draws among the k "
        "candidates; transformers sorts the vocabulary)",
    )
    bf16, hf_fp32 = measured["greedy b1 bf16 (vs hf fp32)"]
    results.add(
        "bf16-greedy-b1",
        bf16 / hf_fp32,
        "x",
        "greedy b1: gpt2kit bf16 / transformers fp32 (cross-dtype)",
    )
    for name, (t_first, rss_rise) in compile_times.items():
        eager_tps = measured["greedy b1 fp32"][0]
        tps = measured[f"greedy b1 fp32 {name}"][0]
        print(
            f"{name}: first call (compile + run) {t_first:.1f} s, resident memory "
            f"+{rss_rise:.0f} MiB; {tps / eager_tps:.2f}x the eager gpt2kit greedy b1"
        )
        results.add(f"{name}-greedy-b1", tps / eager_tps, "x", f"greedy b1 {name} / eager gpt2kit")
    results.save(results_dir(args))


if __name__ == "__main__":
    sys.exit(main())
