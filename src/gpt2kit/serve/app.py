"""The FastAPI application: OpenAI-compatible completions, task endpoints, health, metrics.

`create_app(model)` loads the model, starts nothing yet, and returns an ASGI app whose
routes live in `gpt2kit.serve.routers` (one module per endpoint group) and share one
`ServerState`. The model lives in one worker thread (`Batcher`); request handlers only
validate, queue and wait, so the event loop never runs a forward pass.

Errors are OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`,
with `param` naming the offending field (`errors.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from ..loading import DEFAULT_MODEL_DIR, load_model_and_tokenizer
from .adapters import load_adapters
from .batching import Batcher
from .chat_template import check_template
from .errors import APIError, install_handlers
from .guard import Guard
from .metrics import Metrics
from .routers import ALL as ROUTERS
from .state import ServerState
from .tasks import TaskRunner, supported_tasks

__all__ = ["APIError", "DEFAULT_MODEL_DIR", "create_app", "load_model"]

logger = logging.getLogger("gpt2kit.serve")

# `load_model` is the shared loader (`gpt2kit.loading`), under the name this module had.
load_model = load_model_and_tokenizer


def create_app(
    model: Any = None,
    tokenizer: Any = None,
    *,
    model_name: str | None = None,
    max_batch_size: int = 16,
    api_key: str | None = None,
    max_prompt_tokens: int | None = None,
    max_tokens_cap: int = 512,
    timeout: float = 120.0,
    queue_size: int = 256,
    max_body_bytes: int = 1 << 20,
    batch_wait_ms: float = 5.0,
    device: str | None = None,
    allowed_hosts: Iterable[str] | None = None,
    chat_template: str | None = None,
    adapters: Mapping[str, str | os.PathLike] | Sequence[str] | None = None,
    quantization: Any = None,
) -> FastAPI:
    """Build the server for one model.

    Args:
        model: a gpt2kit model object, a local folder or Hub id, or None for the model
            shipped in `gpt2kit/assets/default_model`.
        tokenizer: defaults to the folder's tokenizer, else GPT-2's.
        model_name: the id reported by `/v1/models` (default: the path or class name).
        max_batch_size: most sequences decoded together (continuous batching).
        api_key: when set, every path but `/healthz` and `/` needs
            `Authorization: Bearer <api_key>` (the OpenAPI docs included). An empty key is
            refused: it would look like protection and be none.
        max_prompt_tokens: longest prompt accepted (default: the model's `n_positions - 1`).
        max_tokens_cap: largest `max_tokens` accepted (also the default when a request
            sends `max_tokens: null`).
        timeout: seconds a request may take from arrival to its last token (504 after).
        queue_size: requests waiting to start before new ones get 503 + `Retry-After`;
            one request asking for more sequences than this gets 400.
        max_body_bytes: largest request body (413 beyond).
        batch_wait_ms: how long an idle worker gathers requests into one first forward.
        device: device for a model loaded from a path.
        allowed_hosts: host names accepted in the `Host:` header (None: any); `gpt2kit
            serve` passes the loopback names when it binds to loopback (DNS rebinding).
        chat_template: Jinja2 chat template text for `/v1/chat/completions` (default: the
            tokenizer's, read from the folder's `chat_template.jinja` or
            `tokenizer_config.json`; no template means chat requests get a 400 naming it).
        adapters: LoRA adapters to serve beside the base model, `{name: adapter folder}`
            (loaded onto the model, frozen and unmerged), or the names of adapters already
            loaded on the model object. A request picks one with `"model": name` (the base
            by its own name); rows of different adapters decode in the same batch.
        quantization: `"int8"` / `"int4"` weight-only quantization of a model loaded from
            a path (`gpt2kit.quantization`).

    Example:
        >>> app = create_app("path/to/saved/model", max_batch_size=8)   # doctest: +SKIP
        >>> uvicorn.run(app, port=8000)                                  # doctest: +SKIP
    """
    if api_key is not None and not api_key.strip():
        raise ValueError("api_key: an empty key protects nothing; pass a real key or None")
    model, tokenizer, default_name = load_model(model, tokenizer, device, quantization)
    name = model_name or default_name
    if isinstance(adapters, Mapping):
        adapter_names = load_adapters(
            model, {k: os.fspath(v) for k, v in adapters.items()}, base_name=name
        )
    else:
        adapter_names = list(adapters or [])
        missing = [a for a in adapter_names if a not in getattr(model, "peft_config", {})]
        if missing:
            raise ValueError(f"adapters: the model has no adapter named {', '.join(missing)}")
        if name in adapter_names:
            raise ValueError(f"adapters: {name!r} is the base model's name; rename the adapter")
    if chat_template is None:
        chat_template = getattr(tokenizer, "chat_template", None)
    if chat_template is not None:
        check_template(chat_template)
    tasks = supported_tasks(model)
    if chat_template is not None and "completions" in tasks:
        tasks.insert(tasks.index("completions") + 1, "chat")
    n_positions = model.config.n_positions
    batcher = Batcher(
        model,
        tokenizer,
        max_batch_size=max_batch_size,
        queue_size=queue_size,
        batch_wait_ms=batch_wait_ms,
    )
    state = ServerState(
        model=model,
        tokenizer=tokenizer,
        name=name,
        tasks=tasks,
        batcher=batcher,
        runner=TaskRunner(model, tokenizer),
        metrics=Metrics(),
        prompt_limit=min(max_prompt_tokens or n_positions - 1, n_positions - 1),
        max_tokens_cap=max_tokens_cap,
        timeout=timeout,
        queue_size=queue_size,
        chat_template=chat_template,
        adapters=adapter_names,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        logger.info(
            "serving %s (%s) with tasks %s", name, type(model).__name__, ", ".join(state.tasks)
        )
        try:
            yield
        finally:
            # uvicorn has already let open requests finish; the worker drains what is left.
            await asyncio.get_running_loop().run_in_executor(None, batcher.stop)

    app = FastAPI(title="gpt2kit", version=_version(), lifespan=lifespan)
    app.state.server = state
    app.state.batcher, app.state.metrics, app.state.tasks = batcher, state.metrics, state.tasks
    install_handlers(app)
    app.add_middleware(
        Guard,
        api_key=api_key,
        max_body_bytes=max_body_bytes,
        metrics=state.metrics,
        allowed_hosts=allowed_hosts,
    )
    for router in ROUTERS:
        app.include_router(router)
    return app


def _version() -> str:
    from .. import __version__

    return __version__
