"""HTTP serving (optional `serve` extra: `pip install gpt2kit[serve]`).

`create_app(model)` builds a FastAPI app with OpenAI-compatible `/v1/completions`,
`/v1/chat/completions` and `/v1/embeddings` (continuously batched, streamed as
server-sent events, with logprobs and structured output), `/tokenize`, task endpoints
for whatever the loaded model can do, `/healthz`, `/metrics` and a browser playground.
`gpt2kit serve --model PATH` runs it with uvicorn. See docs/serving.md.

Example:
    >>> from gpt2kit.serve import create_app            # doctest: +SKIP
    >>> app = create_app("path/to/model")               # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """See `gpt2kit.serve.app.create_app` (imported lazily: FastAPI is an optional extra)."""
    try:
        from .app import create_app as _create_app
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"serving needs the optional dependencies ({err.name} is missing): pip install 'gpt2kit[serve]'"
        ) from err
    return _create_app(*args, **kwargs)
