"""Long documents: `GPT2ForDocumentClassification` throughput and peak training memory.

    python benchmarks/bench_document_classification.py           # 20k-token documents
    python benchmarks/bench_document_classification.py --quick   # tiny model, short documents

Throughput: documents of `--doc-tokens` tokens (random ids) classified by gpt2kit and by the
reference, the same windows through `transformers`' `GPT2Model` in batches of
`window_batch_size`, last-token pooled and mean-aggregated by hand (transformers has no
document head), interleaved in one process; tokens/s counts document tokens.

Memory: peak resident set size of a fresh subprocess during one training step (forward +
backward) on one document, minus its RSS before the step (Linux: the peak `VmHWM` is reset
through /proc/self/clear_refs just before; `ru_maxrss` would inherit the parent's size
across fork), with glibc's mmap
threshold fixed (MALLOC_MMAP_THRESHOLD_) so freed buffers go back to the OS and the peak
reflects live memory. "checkpointed" is the model as shipped; "plain" disables the
per-micro-batch checkpoint, so every window's activations live until the backward pass.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from common import Results, add_results_argument, results_dir

MEMORY_STEP = """
import json, random, sys
import torch
import gpt2kit.models.document_classification as dc
from gpt2kit.config import GPT2Config
torch.set_num_threads(1)
tokens, plain, cfg = int(sys.argv[1]), sys.argv[2] == "plain", json.loads(sys.argv[3])
if plain:
    dc.checkpoint = lambda fn, *args, **kwargs: fn(*args)
torch.manual_seed(0)
model = dc.GPT2ForDocumentClassification(GPT2Config(**cfg)).train()
doc = [random.Random(0).randrange(cfg["vocab_size"]) for _ in range(tokens)]
def rss_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
before = rss_kib("VmRSS")
model(documents=[doc], labels=torch.tensor([1])).loss.backward()
print(json.dumps(rss_kib("VmHWM") - before))
"""


def training_peak_mib(tokens: int, mode: str, cfg: dict) -> float:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_STEP, str(tokens), mode, json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny model, 3k-token documents (< 20 s)"
    )
    parser.add_argument("--doc-tokens", type=int, default=20_000)
    parser.add_argument("--num-docs", type=int, default=2)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=256)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument(
        "--memory-tokens", default="5000,50000", help="document sizes for the memory check"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    add_results_argument(parser)
    args = parser.parse_args()
    keys = ("windowed", "logits-diff", "train-peak-small", "train-peak-large")
    results = Results("bench_document_classification", keys, args)
    if args.quick:
        args.doc_tokens, args.n_layer, args.n_embd, args.window = 3000, 2, 64, 128
        args.memory_tokens = "2000,20000"
    torch.set_num_threads(args.threads)

    import logging

    import transformers

    from gpt2kit.models.document_classification import (
        GPT2ForDocumentClassification,
        document_windows,
    )

    logging.getLogger("gpt2kit").setLevel(logging.ERROR)  # "score newly initialized" is expected
    cfg = dict(
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=4,
        vocab_size=50257,
        n_positions=args.window,
        num_labels=2,
        window_batch_size=16,
    )
    hf_cfg = transformers.GPT2Config(**{k: v for k, v in cfg.items() if k != "window_batch_size"})
    torch.manual_seed(0)
    ref = transformers.GPT2Model(hf_cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ref.save_pretrained(tmp)
        ours = GPT2ForDocumentClassification.from_pretrained(tmp, window_batch_size=16)
    window, stride = ours.window_size, ours.stride

    rng = random.Random(0)
    docs = [[rng.randrange(50000) for _ in range(args.doc_tokens)] for _ in range(args.num_docs)]

    def run_ref(doc: list[int]) -> torch.Tensor:
        pieces = [doc[s:e] for s, e in document_windows(len(doc), window, stride)]
        vecs = []
        for i in range(0, len(pieces), 16):
            ids = torch.tensor(pieces[i : i + 16])  # every window of a long document is full
            # use_cache=False: gpt2kit builds no cache here, so neither does the reference
            vecs.append(ref(input_ids=ids, use_cache=False).last_hidden_state[:, -1])
        return ours.score(torch.cat(vecs).mean(0, keepdim=True))

    def run_ours(doc: list[int]) -> torch.Tensor:
        return ours(documents=[doc]).logits

    runners = {
        "transformers GPT2Model + manual pooling": run_ref,
        "gpt2kit GPT2ForDocumentClassification": run_ours,
    }
    seconds = dict.fromkeys(runners, 0.0)
    per_doc: dict[str, list[float]] = {name: [] for name in runners}
    diff = 0.0
    with torch.inference_mode():
        for i, doc in enumerate(docs):
            got = {}
            for name in list(runners) if i % 2 == 0 else list(reversed(runners)):
                t0 = time.perf_counter()
                got[name] = runners[name](doc)
                seconds[name] += time.perf_counter() - t0
                per_doc[name].append(time.perf_counter() - t0)
            a, b = got.values()
            diff = max(diff, (a - b).abs().max().item())
    total = args.num_docs * args.doc_tokens
    print(
        f"{args.num_docs} documents x {args.doc_tokens} tokens; {args.n_layer} layers, width {args.n_embd}, "
        f"window {window}, overlap {stride}; {args.threads} thread(s), CPU, fp32"
    )
    base = next(iter(runners))
    print(
        "  (tokens/s over all documents; ratio: the median over documents of the per-document ratio)"
    )
    for name, s in seconds.items():
        ratio = statistics.median(ref / mine for ref, mine in zip(per_doc[base], per_doc[name]))
        print(f"  {name:42s} {total / s:9.0f} doc tokens/s  x{ratio:.2f}")
    print(f"  max |logit difference|: {diff:.2e}")
    results.add(
        "windowed",
        ratio,
        "x",
        "GPT2ForDocumentClassification / transformers GPT2Model on the same windows",
    )
    results.add("logits-diff", diff, "", "max |logits difference| fp32")

    print("peak training memory above the model (one step, one document, VmHWM - VmRSS before):")
    sizes = [int(n) for n in args.memory_tokens.split(",")]
    # A small vocabulary, so building the model does not set the peak before the step does.
    mem_cfg = {**cfg, "vocab_size": 1000}
    for n, key in zip((sizes[0], sizes[-1]), ("train-peak-small", "train-peak-large")):
        peak = training_peak_mib(n, "checkpointed", mem_cfg)
        line = f"  {n:7d} tokens: checkpointed {peak:8.1f} MiB"
        if n == sizes[0]:  # keeping all activations: only the smallest size, it grows fast
            line += f"   plain {training_peak_mib(n, 'plain', mem_cfg):8.1f} MiB"
        print(line)
        results.add(key, peak, "MiB", f"training-step peak above the model, {n}-token document")
    results.save(results_dir(args))


if __name__ == "__main__":
    main()
