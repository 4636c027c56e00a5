"""Quantized CPU decoding: gpt2kit int8 / int4 against CTranslate2 int8 and gpt2kit fp32.

One process, same weights (GPT-2 124M shape, random init; `--quick`: a tiny config),
every engine run once per round, rounds interleaved; each figure is the MEDIAN over
`--rounds` rounds (the one statistic this script uses). Rows:

- greedy, batch 1, prompt 16, exactly `--new` new tokens (tokens/s);
- top-k 50 sampling, batch 8, prompt 16, `--new` new tokens (tokens/s, all rows);
- time to first token after a 128-token prompt (ms; one new token);
- resident weight bytes (the model's tensors, tied once, plus the decoder's copies).

Bound: batch-1 decoding reads every weight once per token, so tokens/s <= read bandwidth
/ bytes read per token. Each engine's read bandwidth is `common.ReadBandwidth` on a buffer
of ITS OWN step bytes (the fastest sum on torch's threads, i.e. the decoding threads),
sampled next to each round; the bound uses the highest sample (the one that bounds). Why
per engine: on a CPU whose last-level cache holds the int8 weights (124 MB; e.g. a 480 MB
L3) but not the fp32 ones (500 MB), a read of the fp32 size measures DRAM while the int8
step may read from cache: that bound would not bound int8. A figure above 100% means the
bound is wrong, and is printed as such.

CTranslate2 (`pip install ctranslate2`, the `bench` extra) converts the same weights
(saved as a transformers folder) with `quantization="int8"` and runs with
`compute_type="int8"` on `torch.get_num_threads()` threads. Absent: its rows say so. It
runs in a child process that never imports torch (`_CT2_CHILD`; the rounds still
interleave, each call timed inside the child): in one process its parallel regions bind
to torch's libgomp (torch loads it globally) from CTranslate2's own worker thread, a second
team past the CPU count, and libgomp then stops spinning at barriers for every team:
measured 2026-12-07 on the 2-core Zen 4, gpt2kit int8 at batch 1 went from 5.0 to 8.6 ms
per token once a CTranslate2 generator had run in the process. Neither engine runs like
that for its users.

    python benchmarks/bench_quant.py --rounds 7
    python benchmarks/bench_quant.py --quick
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from common import ReadBandwidth, Results, add_results_argument, bound_fraction, results_dir

from gpt2kit import GPT2Config, GPT2LMHeadModel, decode
from gpt2kit.quantization import weight_bytes

BUDGET = [  # (case, engine a, engine b, budget of a / b)
    ("greedy b1", "gpt2kit int8", "ctranslate2 int8", ">= 1.5"),
    ("greedy b1", "gpt2kit int4", "gpt2kit int8", ">= 1.3"),
    ("greedy b1", "gpt2kit int8", "gpt2kit fp32", ""),
    ("top-k b8", "gpt2kit int8", "ctranslate2 int8", ">= 1.3"),
    ("top-k b8", "gpt2kit int8", "gpt2kit fp32", ""),
    ("ttft p128", "gpt2kit int8", "ctranslate2 int8", ">= 1.0"),
]


def ratio_key(case: str, a: str, b: str) -> str:
    a = a.removeprefix("gpt2kit ")
    b = b.replace("ctranslate2", "ct2").removeprefix("gpt2kit ")
    return f"{case}:{a}/{b}".replace(" ", "-")


def step_bytes(model: torch.nn.Module) -> int:
    """Bytes a batch-1 step reads: every weight tensor (tied once) but the position table
    and the token embedding (a tied one is the LM head's matrix, read as the head)."""
    total = weight_bytes(model)
    wpe = model.transformer.wpe.weight
    total -= wpe.numel() * wpe.element_size()
    wte = model.transformer.wte
    if isinstance(wte, torch.nn.Embedding) and model.lm_head.weight is not wte.weight:
        total -= wte.weight.numel() * wte.weight.element_size()
    return total


def gk_generate(model, ids, new, sample):
    kw = {"do_sample": True, "top_k": 50} if sample else {"do_sample": False}
    with torch.no_grad():
        return model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kw)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny config, a few seconds")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--no-ct2", action="store_true", help="skip CTranslate2")
    add_results_argument(ap)
    args = ap.parse_args(argv)
    if args.quick:
        config = GPT2Config(n_layer=2, n_head=4, n_embd=128, n_positions=256)
        args.rounds, args.new = min(args.rounds, 2), 16
    else:
        config = GPT2Config()  # 124M
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_quant_"))
    from gpt2kit.tokenizer import GPT2Tokenizer

    GPT2LMHeadModel(config).save_pretrained(
        tmp / "fp32", tokenizer=GPT2Tokenizer.from_pretrained("gpt2")
    )
    models = {
        "gpt2kit fp32": GPT2LMHeadModel.from_pretrained(tmp / "fp32"),
        "gpt2kit int8": GPT2LMHeadModel.from_pretrained(tmp / "fp32", quantization="int8"),
        "gpt2kit int4": GPT2LMHeadModel.from_pretrained(tmp / "fp32", quantization="int4"),
    }
    threads = torch.get_num_threads()
    ct2 = None
    if not args.no_ct2:
        try:
            import ctranslate2

            ctranslate2.converters.TransformersConverter(str(tmp / "fp32")).convert(
                str(tmp / "ct2"), quantization="int8", force=True
            )
            ct2 = subprocess.Popen(
                [sys.executable, "-c", _CT2_CHILD, str(tmp / "ct2"), str(threads)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        except Exception as err:  # (not installed, or its converter refuses)
            print(f"CTranslate2 unavailable ({type(err).__name__}: {err}); its rows are skipped")
    g = torch.Generator().manual_seed(1)
    V = config.vocab_size
    p16 = torch.randint(0, V - 1, (1, 16), generator=g)
    p16b8 = torch.randint(0, V - 1, (8, 16), generator=g)
    p128 = torch.randint(0, V - 1, (1, 128), generator=g)
    toks = lambda ids: [[f"<{i}>" for i in row] for row in ids.tolist()]  # noqa: E731
    if ct2 is not None:  # CT2 takes token strings: use its vocabulary
        vfile = tmp / "ct2" / "vocabulary.json"
        if vfile.is_file():
            vocab = json.loads(vfile.read_text())
        else:
            vocab = (tmp / "ct2" / "vocabulary.txt").read_text().split("\n")
        toks = lambda ids: [[vocab[i] for i in row] for row in ids.tolist()]  # noqa: E731

    def ct2_run(ids, new, sample):
        """(tokens generated, seconds the child's `generate_batch` took)"""
        request = {"tokens": toks(ids), "new": new, "topk": 50 if sample else 1}
        ct2.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
        ct2.stdin.flush()  # type: ignore[union-attr]
        reply = ct2.stdout.readline()  # type: ignore[union-attr]
        if not reply:
            raise RuntimeError("the CTranslate2 child process exited")
        n, seconds = json.loads(reply)
        return n, seconds

    cases = {  # name -> (prompt, new tokens, sampling)
        "greedy b1": (p16, args.new, False),
        "top-k b8": (p16b8, args.new, True),
        "ttft p128": (p128, 1, False),
    }
    engines = list(models) + (["ctranslate2 int8"] if ct2 is not None else [])
    for model in models.values():  # warm: kernels built, decoder plans made
        gk_generate(model, p16, 4, False)
    if ct2 is not None:
        ct2_run(p16, 4, False)
    keys = [
        ratio_key(c, a, b) for c, a, b, _ in BUDGET if ct2 is not None or "ctranslate2" not in b
    ]
    keys += ["int8-of-bound", "int4-of-bound", "int8-resident", "int4-resident"]
    results = Results("bench_quant", tuple(keys), args)
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    counts: dict[tuple[str, str], int] = {}
    bandwidths = {name: ReadBandwidth(step_bytes(model)) for name, model in models.items()}
    for _ in range(args.rounds):
        for bandwidth in bandwidths.values():
            bandwidth.sample()
        for case, (ids, new, sample) in cases.items():
            for engine in engines:
                torch.manual_seed(0)
                if engine in models:
                    t = time.perf_counter()
                    out = gk_generate(models[engine], ids, new, sample)
                    seconds = time.perf_counter() - t
                    n = (out.shape[1] - ids.shape[1]) * ids.shape[0]
                else:
                    n, seconds = ct2_run(ids, new, sample)
                times[(case, engine)].append(seconds)
                counts[(case, engine)] = n
        for bandwidth in bandwidths.values():
            bandwidth.sample()
    bw = {name: bandwidth.peak for name, bandwidth in bandwidths.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    tps = {k: counts[k] / med[k] for k in med}
    print(
        f"bench_quant: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch "
        f"{torch.__version__}, {platform.processor() or platform.machine()}, {threads} threads, "
        f"{'tiny' if args.quick else '124M'} config, median of {args.rounds} interleaved rounds"
    )
    print(
        "read bandwidth, a sum over each engine's step bytes (highest sample next to the runs): "
        + ", ".join(
            f"{name.removeprefix('gpt2kit ')} {step_bytes(models[name]) / 1e6:.0f} MB "
            f"{rate / 1e9:.1f} GB/s"
            for name, rate in bw.items()
        )
    )
    print(f"\n{'case':12s} {'engine':18s} {'tok/s':>9s} {'ms':>9s} {'of bound':>9s}")
    for case in cases:
        for engine in engines:
            k = (case, engine)
            frac = "-"
            if case == "greedy b1" and engine in models:
                frac = bound_fraction(tps[k], bw[engine], step_bytes(models[engine]))
            print(f"{case:12s} {engine:18s} {tps[k]:9.1f} {1e3 * med[k]:9.1f} {frac:>9s}")

    def ratio(case, a, b):
        if (case, a) not in tps or (case, b) not in tps:
            return "n/a"
        if case.startswith("ttft"):
            return f"{med[(case, b)] / med[(case, a)]:.2f}x"
        return f"{tps[(case, a)] / tps[(case, b)]:.2f}x"

    print("\nratios (>1: the first is faster)")
    budget = BUDGET
    for case, a, b, want in budget:
        print(
            f"  {case:10s} {a} / {b}: {ratio(case, a, b):>7s}   {('budget ' + want) if want else ''}"
        )
        r = ratio(case, a, b)
        if r != "n/a":
            results.add(ratio_key(case, a, b), float(r[:-1]), "x", f"{case}: {a} / {b} {want}")
    for name in ("gpt2kit int8", "gpt2kit int4"):
        k = ("greedy b1", name)
        share = tps[k] / (bw[name] / step_bytes(models[name]))
        results.add(
            f"{name.split()[1]}-of-bound", share, "", f"greedy b1 {name}: share of the bound"
        )
    fp32_bytes = weight_bytes(models["gpt2kit fp32"]) + decode.held_bytes(models["gpt2kit fp32"])
    for name in ("gpt2kit int8", "gpt2kit int4"):
        q = weight_bytes(models[name]) + decode.held_bytes(models[name])
        print(
            f"resident weights {name}: {q / 2**20:.1f} MiB = {q / fp32_bytes:.1%} of fp32's "
            f"{fp32_bytes / 2**20:.1f} MiB (model + decoder copies){'  budget <= 30%' if 'int8' in name else ''}"
        )
        results.add(
            f"{name.split()[1]}-resident", q / fp32_bytes, "", f"resident weights {name} / fp32"
        )
    results.save(results_dir(args))
    if ct2 is not None:
        ct2.stdin.close()  # type: ignore[union-attr]
        ct2.wait(timeout=60)


# The CTranslate2 side (argv: model folder, threads): one JSON request per line on stdin,
# one `[tokens generated, seconds]` line back; torch is never imported here.
_CT2_CHILD = """
import json, sys, time
import ctranslate2
generator = ctranslate2.Generator(
    sys.argv[1], device="cpu", compute_type="int8", intra_threads=int(sys.argv[2])
)
for line in sys.stdin:
    r = json.loads(line)
    t = time.perf_counter()
    out = generator.generate_batch(
        r["tokens"], max_length=r["new"], min_length=r["new"], sampling_topk=r["topk"],
        include_prompt_in_result=False,
    )
    seconds = time.perf_counter() - t
    print(json.dumps([sum(len(x.sequences_ids[0]) for x in out), seconds]), flush=True)
"""


if __name__ == "__main__":
    main()
