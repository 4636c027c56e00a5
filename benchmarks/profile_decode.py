"""Where a batch-1 decode step's time goes on a GPU: device time vs host time.

Prints (124M config, random init, bf16, `cache_implementation="static"`):
- per new token, the whole `generate` loop;
- per replay, the decoder's CUDA graph alone (the device time of one step);
- the kernels in one replay (count and the top ones by time);
- the host-side Python of the loop (cProfile, top functions by own time).
If the loop's time per token is well above the graph's, the host is the bottleneck.

    python benchmarks/profile_decode.py            # needs CUDA
"""

from __future__ import annotations

import cProfile
import pstats
import time

import torch
from torch.profiler import ProfilerActivity, profile

from gpt2kit import GPT2Config, GPT2LMHeadModel
from gpt2kit.generation import generate
from gpt2kit.generation.compiled import release_static_decoders


def measure(model, ids, kw, label: str, host_profile: bool) -> None:
    release_static_decoders(model)
    n = kw["max_new_tokens"]
    generate(model, ids, **kw)  # compile + record
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(3):
        generate(model, ids, **kw)
    torch.cuda.synchronize()
    per_token = (time.perf_counter() - t) / (3 * n)
    decoder = next(iter(model.__dict__["_gpt2kit_static_decoders"].values()))
    graph = decoder.graph
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(200):
        graph.replay()
    torch.cuda.synchronize()
    per_replay = (time.perf_counter() - t) / 200
    print(f"== {label}")
    print(f"generate loop: {per_token * 1e3:.3f} ms/token ({1 / per_token:.0f} tok/s)")
    print(f"graph replay alone: {per_replay * 1e3:.3f} ms ({1 / per_replay:.0f} steps/s)")

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            graph.replay()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    launches = sum(e.count for e in events) / 5
    total = sum(e.device_time_total for e in events) / 5
    print(f"kernels per replay: {launches:.0f}, {total / 1e3:.3f} ms of kernel time")
    for e in sorted(events, key=lambda e: -e.device_time_total)[:8]:
        print(f"  {e.device_time_total / 5:8.1f} us  x{e.count // 5:<3d} {e.key[:90]}")
    if host_profile:
        prof_host = cProfile.Profile()
        prof_host.enable()
        generate(model, ids, **kw)
        torch.cuda.synchronize()
        prof_host.disable()
        pstats.Stats(prof_host).sort_stats("tottime").print_stats(10)


def main() -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config.from_name("gpt2")).eval().to("cuda", torch.bfloat16)
    ids = torch.randint(0, 50257, (1, 16), device="cuda")
    n = 128
    kw = dict(max_new_tokens=n, min_new_tokens=n, pad_token_id=0, cache_implementation="static")
    measure(model, ids, kw, "greedy batch 1, 124M, bf16, decoder-recorded CUDA graph", True)


if __name__ == "__main__":
    main()
