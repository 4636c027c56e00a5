"""The README's performance table, rendered from the committed results files.

Every figure in the table is read from `benchmarks/results/<script>.json`, which each
script writes at the end of a full run (`benchmarks/common.Results`), so the table shows
exactly the latest committed run of each script, with its date and machine. A row whose
results file is missing is left out rather than kept from an older run.

    python benchmarks/report.py            # print the table
    python benchmarks/report.py --write    # replace the table in README.md

`tests/test_readme.py` checks that the README's table is what this script renders.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BEGIN = "<!-- performance table: rendered by benchmarks/report.py from benchmarks/results -->"
END = "<!-- end of performance table -->"

# (results file, work, figure template): `{key:spec}`: the figure formatted with `spec` (always given: keys may contain ":").
ROWS: list[tuple[str, str, str]] = [
    (
        "bench_forward",
        "forward, 124M, batch 8x128 / 1x1024 (`use_cache=False` in both)",
        "{forward-small:.2f}x / {forward-long:.2f}x tokens/s; "
        "peak memory {memory-forward-small:.2f}x / {memory-forward-long:.2f}x less",
    ),
    (
        "bench_forward",
        "training step (forward + backward + AdamW), 124M, 8x128",
        "{train-small:.2f}x tokens/s, {memory-train-small:.2f}x less peak memory",
    ),
    (
        "bench_forward",
        "gpt2kit bf16 vs `transformers` fp32 forward, 8x128 (cross-dtype)",
        "{bf16-forward-small:.2f}x",
    ),
    (
        "bench_text_classification",
        "short texts: packed `GPT2ForTextClassification` vs padded "
        "`GPT2ForSequenceClassification`, 124M",
        "{packed-fp32:.2f}x fp32; packed bf16 vs `transformers` fp32 {packed-bf16:.2f}x "
        "(cross-dtype)",
    ),
    (
        "bench_document_classification",
        "20k-token documents, windowed (4x256)",
        "{windowed:.2f}x; training-step peak {train-peak-small:.0f} MiB at 5k tokens, "
        "{train-peak-large:.0f} MiB at 50k",
    ),
    (
        "bench_generation",
        "greedy decoding, batch 1, 124M fp32",
        "{greedy-b1:.2f}x ({greedy-b1-tok-s:.1f} tok/s: {greedy-b1-of-bound:.0%} of the "
        "read-bandwidth bound; `transformers` {hf-greedy-b1-of-bound:.0%})",
    ),
    (
        "bench_generation",
        "top-k 50 sampling, batch 8, 124M fp32",
        "{sample-b8:.2f}x (gpt2kit draws among the k candidates, `transformers` sorts the "
        "vocabulary: partly an algorithmic difference)",
    ),
    (
        "bench_generation",
        "greedy batch 1: gpt2kit bf16 vs `transformers` fp32 (cross-dtype)",
        "{bf16-greedy-b1:.2f}x",
    ),
    (
        "bench_training",
        "`Trainer` vs `transformers.Trainer` (4x256 model, 50257 vocab, 8x128)",
        "{trainer:.2f}x; {overhead:+.1%} time over a bare PyTorch loop",
    ),
    (
        "bench_serve",
        "server, 16 concurrent clients vs the same requests one at a time (4x256; "
        "gpt2kit against itself)",
        "{concurrent:.2f}x throughput, mean decode batch {mean-decode-batch:.1f}",
    ),
    (
        "bench_quant",
        "int8 / int4 decoding (124M), against CTranslate2 int8",
        "greedy b1 int8 {greedy-b1:int8/ct2-int8:.2f}x CTranslate2 int8 "
        "({int8-of-bound:.0%} of the int8 bytes' bound), int4 {greedy-b1:int4/int8:.2f}x int8; "
        "top-k b8 {top-k-b8:int8/ct2-int8:.2f}x; first token after 128 "
        "{ttft-p128:int8/ct2-int8:.2f}x; resident weights {int8-resident:.0%} of fp32",
    ),
    (
        "bench_adapters",
        "LoRA r=8 (124M): training step vs `peft`; 4 adapters mixed in one decode batch",
        "{train-step:.2f}x `peft` steps/s, peak memory {peak-memory:.2f}x `peft`'s; mixed "
        "batch {mixed-decode:.2f}x the base model's tokens/s; through the server (16 clients) "
        "{serve-mixed:.2f}x",
    ),
    (
        "bench_quant_quality",
        "int8 / int4 quality: held-out Tiny Shakespeare perplexity vs fp32 (bundled model; "
        "124M trained briefly)",
        "int8 {default:ppl-int8/fp32:.4f}x / {124m:ppl-int8/fp32:.4f}x, int4 "
        "{default:ppl-int4/fp32:.4f}x / {124m:ppl-int4/fp32:.4f}x; bundled model's greedy "
        "tokens equal to fp32's: int8 {default:greedy-int8-match:.0%}, int4 "
        "{default:greedy-int4-match:.0%}",
    ),
    (
        "bench_serve_features",
        "server features (gpt2kit against itself, 4x256)",
        "decode time with logprobs {logprobs-time:.2f}x without; JSON-schema-constrained "
        "{constrained-rate:.2f}x unconstrained tokens/s",
    ),
    (
        "bench_tokenizer",
        "tokenizer: 256 lines padded / truncated+padded / 64 passages with offsets",
        "`transformers`' time / gpt2kit's {pad-transformers/new:.2f}x / "
        "{truncate-pad-transformers/new:.2f}x / {offsets-transformers/new:.2f}x",
    ),
    (
        "bench_generation_cuda",
        'GPU, bf16, greedy batch 1: decode step as a CUDA graph (`cache_implementation="static"`)',
        "{cuda-greedy-b1-captured:.0f} tok/s, {cuda-greedy-b1-captured-ratio:.1f}x "
        "`transformers`' eager `generate`",
    ),
    (
        "bench_training_bf16",
        "GPU: `Trainer`, bf16 autocast",
        "{trainer:.2f}x `transformers.Trainer`",
    ),
]


def _fill(template: str, figures: dict[str, dict]) -> str:
    values = {key: fig["value"] for key, fig in figures.items()}
    out, i = [], 0
    while i < len(template):
        if template[i] == "{":
            j = template.index("}", i)
            key, _, spec = template[i + 1 : j].rpartition(":")  # (keys may hold ":")
            out.append(format(values[key], spec))
            i = j + 1
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


def _machine(record: dict) -> str:
    m = record["machine"]
    where = m.get("gpu")
    if not where:
        cpu = f"{m['cpu']}, {m['isa']}" if m.get("isa") else m["cpu"]
        where = f"{m['cores']} cores ({cpu})"
    load = m.get("load_average_at_start")
    return f"{record['date'][:10]}, {where}" + (f", load {load:g}" if load is not None else "")


def render(results_dir: Path = RESULTS) -> str:
    records = {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}
    lines = [
        BEGIN,
        "| work | gpt2kit vs `transformers` | run (`benchmarks/results/`) |",
        "|---|---|---|",
    ]
    for script, work, template in ROWS:
        record = records.get(script)
        if record is None:
            continue
        lines.append(
            f"| {work} | {_fill(template, record['figures'])} | `{script}.json`: {_machine(record)} |"
        )
    lines.append(END)
    return "\n".join(lines)


def readme_table(readme: str) -> str:
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[start:end]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the table in README.md")
    args = parser.parse_args()
    table = render()
    if not args.write:
        print(table)
        return 0
    path = ROOT / "README.md"
    text = path.read_text()
    path.write_text(text.replace(readme_table(text), table))
    print(f"README.md: {table.count(chr(10)) - 3} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
