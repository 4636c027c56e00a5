"""Request counts and latency percentiles, exposed at `/metrics` (Prometheus text or JSON)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any


class Metrics:
    """Request counts, token counts and a window of recent latencies (for percentiles)."""

    def __init__(self, window: int = 4096):
        self.started = time.time()
        self.requests: dict[tuple[str, int], int] = {}
        self.latencies: deque[float] = deque(maxlen=window)

    def count(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1

    def latency(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def percentiles(self) -> dict[str, float]:
        data = sorted(self.latencies)
        if not data:
            return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
        pick = lambda q: data[min(len(data) - 1, int(q * len(data)))]  # noqa: E731
        return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99)}


def snapshot(batcher: Any, metrics: Metrics) -> dict[str, Any]:
    """The numbers `/metrics` reports, as a JSON-ready dict."""
    requests: dict[str, dict[str, int]] = {}
    for (endpoint, status), count in metrics.requests.items():
        requests.setdefault(endpoint, {})[str(status)] = count
    return {
        "uptime_seconds": time.time() - metrics.started,
        "requests": requests,
        "prompt_tokens": batcher.prompt_tokens,
        "completion_tokens": batcher.generated_tokens,
        "queue_depth": batcher.queue_depth,
        "running": batcher.running,
        "decode_steps": batcher.steps,
        "mean_batch_size": batcher.batched_rows / batcher.steps if batcher.steps else 0.0,
        "mixed_adapter_steps": getattr(batcher, "mixed_adapter_steps", 0),
        "latency_seconds": metrics.percentiles(),
    }


def prometheus(s: dict[str, Any]) -> str:
    """The snapshot in Prometheus' text exposition format."""
    lines = [
        "# TYPE gpt2kit_requests_total counter",
        *(
            f'gpt2kit_requests_total{{endpoint="{ep}",status="{st}"}} {n}'
            for ep, by_status in sorted(s["requests"].items())
            for st, n in sorted(by_status.items())
        ),
        "# TYPE gpt2kit_prompt_tokens_total counter",
        f"gpt2kit_prompt_tokens_total {s['prompt_tokens']}",
        "# TYPE gpt2kit_completion_tokens_total counter",
        f"gpt2kit_completion_tokens_total {s['completion_tokens']}",
        "# TYPE gpt2kit_queue_depth gauge",
        f"gpt2kit_queue_depth {s['queue_depth']}",
        "# TYPE gpt2kit_running_sequences gauge",
        f"gpt2kit_running_sequences {s['running']}",
        "# TYPE gpt2kit_decode_steps_total counter",
        f"gpt2kit_decode_steps_total {s['decode_steps']}",
        "# TYPE gpt2kit_mean_batch_size gauge",
        f"gpt2kit_mean_batch_size {s['mean_batch_size']:.4f}",
        "# TYPE gpt2kit_mixed_adapter_steps_total counter",
        f"gpt2kit_mixed_adapter_steps_total {s.get('mixed_adapter_steps', 0)}",
        "# TYPE gpt2kit_request_latency_seconds summary",
        *(
            f'gpt2kit_request_latency_seconds{{quantile="{q}"}} {s["latency_seconds"][k]:.6f}'
            for q, k in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))
        ),
    ]
    return "\n".join(lines) + "\n"
