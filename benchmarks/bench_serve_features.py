"""What the OpenAI features cost: logprobs and constrained decoding, against plain decoding.

Budgets (issue 21): requesting logprobs adds at most 10% to decode time; constrained
decoding (a JSON schema through llguidance) runs at 0.8x or more of unconstrained
tokens/s. Both are measured on the batcher itself (no HTTP in the timing), on a small
random GPT-2 (default 4 layers, width 256, GPT-2's 50257-token vocabulary), with
`--rows` sequences decoded together, the two variants interleaved round by round so
machine noise falls on both alike. Printed: the median per variant and the ratio.

Usage:
    python benchmarks/bench_serve_features.py            # ~1-2 minutes on a laptop CPU
    python benchmarks/bench_serve_features.py --quick    # tiny model, a smoke test

Numbers from a shared, busy machine are provisional: re-run on a quiet one.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch
from common import Results, add_results_argument, results_dir

from gpt2kit import GPT2Config, GPT2ForCausalLM
from gpt2kit.serve.batching import Batcher, GenRequest, SamplingParams
from gpt2kit.serve.constrained import grammar_for
from gpt2kit.tokenizer import GPT2Tokenizer

# Documents longer than `--tokens`, so constrained rows run as many steps as free ones
# (a row that completes its document early would leave emptier batches behind, and the
# ratio would measure batch occupancy instead of the constraint's cost).
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "tags": {
            "type": "array",
            "items": {"type": "string", "minLength": 2, "maxLength": 12},
            "minItems": 60,
        },
        "score": {"type": "number"},
    },
    "required": ["name", "tags", "score"],
}


def run(batcher: Batcher, tok, rows: int, params: SamplingParams) -> tuple[float, int]:
    """Decode `rows` sequences together; (seconds, generated tokens)."""
    done = threading.Semaphore(0)
    counts = [0] * rows

    def sink(i):
        def put(ev):
            if ev[0] == "done":
                counts[i] = ev[2]
                done.release()
            elif ev[0] == "error":
                raise SystemExit(f"row failed: {ev[1]}")

        return put

    prompts = [
        tok.encode(f"Record {i}: a short description of item number {i}") for i in range(rows)
    ]
    t0 = time.perf_counter()
    batcher.submit_generate([GenRequest(p, params, sink(i)) for i, p in enumerate(prompts)])
    for _ in range(rows):
        done.acquire()
    return time.perf_counter() - t0, sum(counts)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 layers, width 64, 2 rounds")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's); 1 on a loaded machine, where a "
        "parallel 50k-element op can wait tens of ms on its spinning pool",
    )
    add_results_argument(ap)
    args = ap.parse_args()
    results = Results("bench_serve_features", ("logprobs-time", "constrained-rate"), args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.layers, args.width, args.rounds, args.tokens = 2, 64, 2, 24
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=args.layers, n_embd=args.width, n_head=max(1, args.width // 64), n_positions=256
    )
    model = GPT2ForCausalLM(cfg).eval()
    tok = GPT2Tokenizer.from_pretrained("gpt2")
    grammar = grammar_for(
        {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}},
        None,
        None,
        tokenizer=tok,
        vocab=cfg.vocab_size,
        eos=tok.eos_token_id,
    )
    batcher = Batcher(model, tok, max_batch_size=args.rows, batch_wait_ms=20).start()
    n = args.tokens
    variants = {
        "greedy": SamplingParams(max_tokens=n, temperature=0),
        "greedy+logprobs5": SamplingParams(max_tokens=n, temperature=0, logprobs=5),
        "sampled": SamplingParams(max_tokens=n, temperature=1.0, seed=1),
        "sampled+json_schema": SamplingParams(
            max_tokens=n, temperature=1.0, seed=1, grammar=grammar
        ),
    }
    try:
        for p in variants.values():  # warm-up: caches, kernels, the grammar's lexer
            run(batcher, tok, args.rows, p)
        secs: dict[str, list[float]] = {k: [] for k in variants}
        rate: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for name, p in variants.items():
                s, t = run(batcher, tok, args.rows, p)
                secs[name].append(s)
                rate[name].append(t / s)
    finally:
        batcher.stop()
    print(
        f"model {args.layers}x{args.width}, {args.rows} rows x {n} tokens, {args.rounds} rounds, "
        f"interleaved, {torch.get_num_threads()} torch threads"
    )
    for name in variants:
        print(
            f"  {name:22s} median {statistics.median(secs[name]):.3f} s   {statistics.median(rate[name]):8.1f} tokens/s"
        )
    lp = statistics.median(secs["greedy+logprobs5"]) / statistics.median(secs["greedy"])
    cs = statistics.median(rate["sampled+json_schema"]) / statistics.median(rate["sampled"])
    print(f"logprobs decode-time ratio   {lp:.3f}  (budget <= 1.10)")
    print(f"constrained tokens/s ratio   {cs:.3f}  (budget >= 0.80)")
    results.add("logprobs-time", lp, "x", "decode time with logprobs=5 / without (budget <= 1.10)")
    results.add(
        "constrained-rate", cs, "x", "json_schema-constrained tokens/s / unconstrained (>= 0.8)"
    )
    results.save(results_dir(args))


if __name__ == "__main__":
    main()
