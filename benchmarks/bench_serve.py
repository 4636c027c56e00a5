"""Serving throughput: 16 concurrent clients vs the same requests sent one at a time.

A loopback server (`gpt2kit.serve`, uvicorn in a thread) with a small random GPT-2
(default 4 layers, width 256, GPT-2's 50257-token vocabulary; `--preset gpt2` for the
124M model) answers the same set of greedy `/v1/completions` requests twice:

- sequential: one client, one request at a time (every decode step runs one row);
- concurrent: `--clients` threads share the requests (the continuous batcher decodes
  up to `--max-batch-size` rows per step).

Printed: completed requests, generated tokens/s, request latency p50/p99 for each, the
throughput ratio concurrent / sequential, and the server's mean decode batch size.
Outputs of the two runs are compared (greedy: they must be identical).

Usage:
    python benchmarks/bench_serve.py                 # ~1 minute on a laptop CPU
    python benchmarks/bench_serve.py --quick         # tiny model, a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import httpx
import torch
from common import Results, add_results_argument, results_dir

from gpt2kit import GPT2Config, GPT2ForCausalLM
from gpt2kit.serve.app import create_app
from gpt2kit.serve.testing import BackgroundServer


def run(url: str, bodies: list[dict], clients: int) -> tuple[float, list[float], list[str]]:
    """Send `bodies` with `clients` threads; return (seconds, latencies, texts in order)."""
    texts: list[str] = [""] * len(bodies)
    latencies: list[float] = []
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=300) as c:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                r = c.post("/v1/completions", json=bodies[i])
                r.raise_for_status()
                texts[i] = r.json()["choices"][0]["text"]
                with lock:
                    latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, texts


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--preset", default=None, help="GPT2Config preset (e.g. gpt2); default: small custom model"
    )
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="tiny model, few requests")
    ap.add_argument("--rounds", type=int, default=3, help="sequential + concurrent passes")
    add_results_argument(ap)
    args = ap.parse_args()
    results = Results("bench_serve", ("concurrent", "mean-decode-batch", "identical"), args)

    torch.manual_seed(0)
    if args.quick:
        config = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=128)
        args.requests, args.max_tokens = 32, 16
    elif args.preset:
        config = GPT2Config.from_name(args.preset)
    else:
        config = GPT2Config(n_layer=4, n_embd=256, n_head=4, n_positions=256)
    model = GPT2ForCausalLM(config).eval()
    words = [
        "the",
        "of",
        "and",
        "a",
        "to",
        "in",
        "is",
        "you",
        "that",
        "it",
        "he",
        "was",
        "for",
        "on",
        "are",
        "as",
        "with",
        "his",
        "they",
    ]
    bodies = [
        {
            "prompt": " ".join(words[(i * 7 + j) % len(words)] for j in range(4 + i % 12)),
            "max_tokens": args.max_tokens,
            "temperature": 0,
        }
        for i in range(args.requests)
    ]
    app = create_app(model, max_batch_size=args.max_batch_size, max_tokens_cap=args.max_tokens)
    with BackgroundServer(app) as url:
        run(url, bodies[:2], 1)  # warm-up
        ratios, identical = [], True
        for _ in range(1 if args.quick else args.rounds):  # the median round is reported
            seq_s, seq_lat, seq_texts = run(url, bodies, 1)
            steps0, rows0 = app.state.batcher.steps, app.state.batcher.batched_rows
            con_s, con_lat, con_texts = run(url, bodies, args.clients)
            b = app.state.batcher
            mean_batch = (b.batched_rows - rows0) / max(1, b.steps - steps0)
            ratios.append(seq_s / con_s)
            identical = identical and seq_texts == con_texts
    tokens = args.requests * args.max_tokens
    result = {
        "model": f"{config.n_layer} layers x {config.n_embd}",
        "threads": torch.get_num_threads(),
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "sequential": {
            "seconds": round(seq_s, 2),
            "tokens_per_s": round(tokens / seq_s, 1),
            "p50_s": round(statistics.median(seq_lat), 3),
            "p99_s": round(pct(seq_lat, 0.99), 3),
        },
        "concurrent": {
            "clients": args.clients,
            "seconds": round(con_s, 2),
            "tokens_per_s": round(tokens / con_s, 1),
            "p50_s": round(statistics.median(con_lat), 3),
            "p99_s": round(pct(con_lat, 0.99), 3),
            "mean_decode_batch": round(mean_batch, 1),
        },
        "throughput_ratio_last_round": round(seq_s / con_s, 2),
        "throughput_ratio_median": round(statistics.median(ratios), 2),
        "outputs_identical": identical,
    }
    print(json.dumps(result, indent=2))
    results.add(
        "concurrent",
        statistics.median(ratios),
        "x",
        f"{args.clients} concurrent clients / the same requests one at a time: gpt2kit against "
        "itself (no other server in the comparison)",
    )
    results.add("mean-decode-batch", mean_batch, "rows", "mean rows per decode step, concurrent")
    results.add("identical", float(identical), "", "concurrent outputs == sequential, every round")
    results.save(results_dir(args))


if __name__ == "__main__":
    main()
