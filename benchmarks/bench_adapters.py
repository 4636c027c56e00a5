"""LoRA training step: gpt2kit's adapters vs `peft` on `transformers`' GPT-2, CPU.

The same step in both (fp32, r=8, alpha=16 on c_attn/c_proj/c_fc, AdamW over the
adapter's parameters, batch x seq tokens, the model's own dropout on), interleaved round
by round in one process so machine load hits both alike; peak memory per runner is each
runner alone in a child process (`VmHWM`: the whole process, model included).

Budget (issue 20): gpt2kit >= 1.3x peft's steps/s at 124M, 8 x 128, peak memory no
higher. Printed, not asserted: numbers on a shared machine are provisional.

Second part, the serving budget (issue 20: "4 adapters to 16 clients >= 0.8x the
throughput of the same traffic on the base model alone"), two ways:

- `mixed-decode`: offline, 16 rows decoding together through the CPU decoder with a KV
  cache, every row on the base model vs rows spread over 4 adapters in one batch
  (`mixed_batch`), tokens/s;
- `serve-mixed`: through the real server (`gpt2kit.serve`, loopback, the continuous
  batcher), 16 concurrent clients sending the same greedy `/v1/completions` requests to a
  server of the base model alone and to one serving 4 adapters (request `i` names adapter
  `i % 4`), generated tokens/s; the two servers' passes interleave round by round. EOS is
  banned (`logit_bias`) so every request generates `--serve-tokens` tokens on both.

    python benchmarks/bench_adapters.py --quick            # tiny shape, seconds
    python benchmarks/bench_adapters.py                    # 124M, 8 x 128
    python benchmarks/bench_adapters.py --threads 16 --rounds 5
    python benchmarks/bench_adapters.py --no-train          # only the serving parts
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from common import Results, add_results_argument, results_dir

PRESETS = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=4),
    "small": dict(n_layer=4, n_embd=256, n_head=4),
    "124m": dict(n_layer=12, n_embd=768, n_head=12),
}
TARGETS = ["c_attn", "c_proj", "c_fc"]


def build(runner: str, shape: dict, r: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    if runner == "gpt2kit":
        from gpt2kit import GPT2Config, GPT2LMHeadModel, LoraConfig

        model = GPT2LMHeadModel(GPT2Config(**shape))
        model.add_adapter(LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS))
    else:
        import transformers
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        base = transformers.GPT2LMHeadModel(transformers.GPT2Config(**shape))
        model = get_peft_model(
            base, PeftLoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS, fan_in_fan_out=True)
        )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(params, lr=1e-4)


def step(runner: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids) -> float:
    t = time.perf_counter()
    if runner == "gpt2kit":  # (the Trainer's call: the chunked LM loss, no [B, T, V] logits)
        loss = model(input_ids=ids, labels=ids, return_logits=False).loss
    else:
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t


def child(runner: str, shape: dict, r: int, batch: int, seq: int, steps: int) -> None:
    """Run one runner alone and print its peak RSS (MiB) as JSON."""
    model, optimizer = build(runner, shape, r)
    ids = torch.randint(0, 50257, (batch, seq), generator=torch.Generator().manual_seed(0))
    for _ in range(steps):
        step(runner, model, optimizer, ids)
    print(json.dumps({"runner": runner, "peak_mib": _peak_mib()}))


def _peak_mib() -> float:
    """This process's peak RSS. `VmHWM` (Linux) belongs to the address space `exec` made;
    `ru_maxrss` would also count the parent's pages the child had before `exec`."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def decode_rate(model, rows: int, prompt: int, steps: int, names=None) -> float:
    """Tokens/s of `steps` cached one-token steps for `rows` rows after a prefill."""
    import contextlib

    from gpt2kit.adapters import mixed_batch
    from gpt2kit.decode import cpu_decoder

    ids = torch.randint(0, 50257, (rows, prompt), generator=torch.Generator().manual_seed(1))
    decoder = cpu_decoder(model, rows) or model
    context = mixed_batch(names) if names else contextlib.nullcontext()
    with torch.no_grad(), context:
        out = decoder(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        t = time.perf_counter()
        for _ in range(steps):
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            out = decoder(input_ids=tok, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return rows * steps / (time.perf_counter() - t)


def serve_part(shape: dict, r: int, rows: int, steps: int, rounds: int) -> None:
    from gpt2kit import GPT2Config, GPT2LMHeadModel, LoraConfig
    from gpt2kit.adapters import BASE

    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(**shape)).eval()
    adapted = GPT2LMHeadModel(GPT2Config(**shape)).eval()
    adapted.load_state_dict(base.state_dict())
    names = [f"a{i}" for i in range(4)]
    for name in names:
        adapted.add_adapter(
            LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS, init_lora_weights=False), name
        )
    adapted.eval()
    row_names = [names[i % 4] for i in range(rows)]
    decode_rate(base, rows, 16, 2)  # warm-up (decoder copies, kernels)
    decode_rate(adapted, rows, 16, 2, row_names)
    plain, mixed, base_rows = [], [], []
    for _ in range(rounds):
        plain.append(decode_rate(base, rows, 16, steps))
        mixed.append(decode_rate(adapted, rows, 16, steps, row_names))
        base_rows.append(decode_rate(adapted, rows, 16, steps, [BASE] * rows))
    med = statistics.median
    print(f"decoding {rows} rows, {steps} steps x {rounds} rounds: base model {med(plain):.0f} tokens/s, "
          f"4 adapters mixed {med(mixed):.0f}, adapted model on base rows {med(base_rows):.0f}")  # fmt: skip
    print(
        f"4 adapters mixed / base model tokens/s: {med(mixed) / med(plain):.2f}x (budget >= 0.8x)"
    )
    return med(mixed) / med(plain)


def _clients(url: str, bodies: list[dict], clients: int) -> tuple[float, int]:
    """Send `bodies` from `clients` threads; (seconds, generated tokens)."""
    import threading

    import httpx

    pending = iter(range(len(bodies)))
    lock = threading.Lock()
    tokens, errors = [0], []

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=600) as c:
            while True:
                with lock:
                    i = next(pending, None)
                if i is None:
                    return
                r = c.post("/v1/completions", json=bodies[i])
                if r.status_code != 200:
                    errors.append(r.text)
                    return
                with lock:
                    tokens[0] += r.json()["usage"]["completion_tokens"]

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"server error: {errors[0][:500]}")
    return time.perf_counter() - start, tokens[0]


def server_part(
    shape: dict, r: int, clients: int, requests: int, max_tokens: int, rounds: int
) -> float:
    """Generated tokens/s of the 4-adapter server / the base-only server, same traffic."""
    from gpt2kit import GPT2Config, GPT2ForCausalLM, LoraConfig
    from gpt2kit.serve.app import create_app
    from gpt2kit.serve.testing import BackgroundServer

    torch.manual_seed(0)
    config = GPT2Config(**shape, n_positions=256)
    base = GPT2ForCausalLM(config).eval()
    adapted = GPT2ForCausalLM(config).eval()
    adapted.load_state_dict(base.state_dict())
    names = [f"a{i}" for i in range(4)]
    for name in names:
        adapted.add_adapter(
            LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS, init_lora_weights=False), name
        )
    adapted.eval()
    words = ["the", "of", "and", "a", "to", "in", "is", "you", "that", "it"]
    words += ["he", "was", "for", "on", "are", "as", "with", "his", "they"]
    bodies = [
        {
            "prompt": " ".join(words[(i * 7 + j) % len(words)] for j in range(4 + i % 12)),
            "max_tokens": max_tokens,
            "temperature": 0,
            "logit_bias": {"50256": -100},  # (no early EOS: the same work on both servers)
        }
        for i in range(requests)
    ]
    tagged = [{**b, "model": names[i % 4]} for i, b in enumerate(bodies)]
    common = dict(max_batch_size=clients, max_tokens_cap=max_tokens)
    base_app = create_app(base, model_name="base", **common)
    lora_app = create_app(adapted, model_name="base", adapters=names, **common)
    with BackgroundServer(base_app) as base_url, BackgroundServer(lora_app) as lora_url:
        _clients(base_url, bodies[:2], 2)  # warm-up (decoder copies, kernels)
        _clients(lora_url, tagged[:4], 4)
        plain, mixed, ratios = [], [], []
        mixed_steps = lora_app.state.batcher.mixed_adapter_steps
        for _ in range(rounds):
            s, n = _clients(base_url, bodies, clients)
            plain.append(n / s)
            s, n = _clients(lora_url, tagged, clients)
            mixed.append(n / s)
            ratios.append(mixed[-1] / plain[-1])
        mixed_steps = lora_app.state.batcher.mixed_adapter_steps - mixed_steps
    med = statistics.median
    print(f"server, {clients} clients, {requests} requests x {max_tokens} tokens, {rounds} rounds: "
          f"base model alone {med(plain):.0f} tokens/s, 4 adapters {med(mixed):.0f} tokens/s "
          f"({mixed_steps} decode steps mixed adapters)")  # fmt: skip
    if mixed_steps == 0:
        raise RuntimeError("no decode step of the adapter server mixed adapters")
    print(f"4 adapters / base model, served: {med(ratios):.2f}x (budget >= 0.8x)")
    return med(ratios)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="124m")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="timed steps per runner per round")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="tiny shape, 2 rounds of 2 steps")
    p.add_argument("--serve-rows", type=int, default=16, help="rows decoding together (16)")
    p.add_argument("--serve-steps", type=int, default=16, help="decoding steps per round (16)")
    p.add_argument("--serve-clients", type=int, default=16, help="concurrent clients (16)")
    p.add_argument("--serve-requests", type=int, default=32, help="requests per pass (32)")
    p.add_argument("--serve-tokens", type=int, default=32, help="tokens per request (32)")
    p.add_argument("--no-train", action="store_true", help="only the serving parts")
    p.add_argument("--child", choices=["gpt2kit", "peft"], help=argparse.SUPPRESS)
    add_results_argument(p)
    args = p.parse_args()
    if args.quick:
        args.preset, args.batch, args.seq, args.rounds, args.steps = "tiny", 2, 32, 2, 2
        args.serve_rows, args.serve_steps = 8, 4
        args.serve_clients, args.serve_requests, args.serve_tokens = 4, 8, 4
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = PRESETS[args.preset]
    if args.child:
        child(args.child, shape, args.r, args.batch, args.seq, args.steps + 1)
        return

    serving = ("mixed-decode", "serve-mixed")
    keys = serving if args.no_train else ("train-step", "peak-memory", *serving)
    results = Results("bench_adapters", keys, args)
    mixed_what = (
        f"{args.serve_rows} rows of 4 adapters decoding together / the base model, tokens/s"
    )
    served_what = (
        f"server: {args.serve_clients} clients on 4 adapters / the same traffic on the base model "
        "alone, generated tokens/s"
    )

    def serving_parts() -> None:
        mixed = serve_part(shape, args.r, args.serve_rows, args.serve_steps, args.rounds)
        results.add("mixed-decode", mixed, "x", mixed_what)
        served = server_part(
            shape, args.r, args.serve_clients, args.serve_requests, args.serve_tokens, args.rounds
        )
        results.add("serve-mixed", served, "x", served_what)

    if args.no_train:
        serving_parts()
        results.save(results_dir(args))
        return
    runners = ("gpt2kit", "peft")
    built = {name: build(name, shape, args.r) for name in runners}
    ids = torch.randint(
        0, 50257, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)
    )
    for name in runners:  # warm-up
        step(name, *built[name], ids)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name in runners:
            times[name] += [step(name, *built[name], ids) for _ in range(args.steps)]
    trainable = {
        n: sum(p.numel() for p in built[n][0].parameters() if p.requires_grad) for n in runners
    }
    del built

    peaks = {}
    for name in runners:
        cmd = [sys.executable, __file__, "--child", name, "--preset", args.preset]
        cmd += ["--batch", str(args.batch), "--seq", str(args.seq), "--r", str(args.r)]
        cmd += ["--steps", str(args.steps)] + (
            ["--threads", str(args.threads)] if args.threads else []
        )
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        peaks[name] = json.loads(out.strip().splitlines()[-1])["peak_mib"]

    print(f"LoRA step, {args.preset}, r={args.r} on {','.join(TARGETS)}, {args.batch}x{args.seq}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps")  # fmt: skip
    for name in runners:
        med = statistics.median(times[name])
        print(
            f"  {name:8s} {med * 1e3:9.1f} ms/step (median)  {args.batch * args.seq / med:9.0f} tokens/s"
            f"  peak {peaks[name]:8.0f} MiB  trainable {trainable[name]:,}"
        )
    ratio = statistics.median(times["peft"]) / statistics.median(times["gpt2kit"])
    print(f"gpt2kit / peft steps/s: {ratio:.2f}x (budget >= 1.3x)")
    print(f"peak memory gpt2kit / peft: {peaks['gpt2kit'] / peaks['peft']:.2f}x (budget <= 1.0x)")
    results.add("train-step", ratio, "x", "LoRA training step: gpt2kit / peft steps/s (>= 1.3x)")
    results.add(
        "peak-memory", peaks["gpt2kit"] / peaks["peft"], "x", "peak memory gpt2kit / peft (<= 1.0x)"
    )
    serving_parts()
    results.save(results_dir(args))


if __name__ == "__main__":
    main()
