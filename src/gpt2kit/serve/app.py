"""The FastAPI application: OpenAI-compatible completions, task endpoints, health, metrics.

`create_app(model)` returns an ASGI app; `gpt2kit serve` runs it with uvicorn. The model
lives in one worker thread (`Batcher`); request handlers only validate, queue and wait,
so the event loop never runs a forward pass.

Errors are OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`,
with `param` naming the offending field.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batching import Batcher, GenRequest, QueueFull, SamplingParams, ShuttingDown
from .schemas import (
    AnswerRequest,
    ChooseRequest,
    ClassifyRequest,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    EmbedRequest,
    ModelCard,
    ModelList,
    ScoreRequest,
    TagRequest,
    TaskResponse,
    Usage,
)
from .tasks import TaskRunner, supported_tasks

logger = logging.getLogger("gpt2kit.serve")

_TYPE_TAG = re.compile(
    r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|[A-Z]\w*Item|function-.*)$"
)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default_model"


class APIError(Exception):
    """An error answered as OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type_,
            param,
            code,
        )
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


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


class _Guard:
    """ASGI middleware: API key, body size limit, request counts and latencies.

    Pure ASGI rather than `BaseHTTPMiddleware`, so a streamed response still sees the
    client's disconnect (and frees its batch rows) and bodies are never copied twice.
    """

    def __init__(self, app: Any, *, api_key: str | None, max_body_bytes: int, metrics: Metrics):
        self.app, self.api_key, self.max_body, self.metrics = app, api_key, max_body_bytes, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        tracked = path.startswith("/v1/")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def refuse(err: APIError) -> None:
            if tracked:
                self.metrics.count(path, err.status)
            await err.response()(scope, receive, send)

        needs_key = self.api_key and (tracked or path == "/metrics")
        if needs_key and headers.get("authorization", "") != f"Bearer {self.api_key}":
            return await refuse(
                APIError(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <key>'",
                    code="invalid_api_key",
                )
            )
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                return await refuse(
                    APIError(
                        413,
                        f"request body is {length} bytes, more than the {self.max_body} allowed",
                        code="body_too_large",
                    )
                )
            # Read the body here (bounded: a chunked body announces no length), then replay it.
            body, more = b"", True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    return await refuse(
                        APIError(
                            413,
                            f"request body exceeds {self.max_body} bytes",
                            code="body_too_large",
                        )
                    )
            replayed, inner = False, receive

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await inner()  # afterwards: wait for the disconnect, as Starlette expects

            receive = replay
        start = time.perf_counter()
        status, streamed = 500, False

        async def watch(message: dict) -> None:
            nonlocal status, streamed
            if message["type"] == "http.response.start":
                status = message["status"]
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                streamed = ctype.startswith(b"text/event-stream")
                if tracked:
                    self.metrics.count(path, status)
            elif (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and tracked
                and not streamed  # streams record their latency when the last token is sent
                and status < 400
            ):
                self.metrics.latency(time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, watch)


def load_model(
    model: Any, tokenizer: Any = None, device: str | None = None, quantization: Any = None
) -> tuple[Any, Any, str]:
    """`(model, tokenizer, name)` from a model object or a path / Hub id (None: the default model)."""
    from ..tokenizer import GPT2Tokenizer

    if model is None:
        if not DEFAULT_MODEL_DIR.is_dir():
            raise FileNotFoundError(
                f"no --model given and no default model at {DEFAULT_MODEL_DIR}; pass --model PATH_OR_ID"
            )
        model = str(DEFAULT_MODEL_DIR)
    if isinstance(model, (str, os.PathLike)):
        from ..models.auto import AutoModelForArchitecture

        name = os.fspath(model)
        kwargs = {"device": device} if device else {}
        if quantization is not None:  # (weight-only int8 / int4: docs/quantization.md)
            kwargs["quantization"] = quantization
        obj = AutoModelForArchitecture.from_pretrained(name, **kwargs)
        if tokenizer is None:
            try:
                tokenizer = GPT2Tokenizer.from_pretrained(name)
            except (FileNotFoundError, OSError):
                logger.info("%s holds no tokenizer files; using the GPT-2 tokenizer", name)
                tokenizer = GPT2Tokenizer.from_pretrained("gpt2")
        model_name = "default" if Path(name).resolve() == DEFAULT_MODEL_DIR else name
    else:
        obj = model
        tokenizer = tokenizer or GPT2Tokenizer.from_pretrained("gpt2")
        model_name = getattr(obj.config, "name_or_path", None) or type(obj).__name__
    return obj.eval(), tokenizer, str(model_name)


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
    quantization: Any = None,
) -> FastAPI:
    """Build the server for one model.

    Args:
        model: a gpt2kit model object, a local folder or Hub id, or None for the model
            shipped in `gpt2kit/assets/default_model`.
        tokenizer: defaults to the folder's tokenizer, else GPT-2's.
        model_name: the id reported by `/v1/models` (default: the path or class name).
        max_batch_size: most sequences decoded together (continuous batching).
        api_key: when set, `/v1/*` and `/metrics` need `Authorization: Bearer <api_key>`.
        max_prompt_tokens: longest prompt accepted (default: the model's `n_positions - 1`).
        max_tokens_cap: largest `max_tokens` accepted (also the default when a request
            sends `max_tokens: null`).
        timeout: seconds a request may take from arrival to its last token (504 after).
        queue_size: requests waiting to start before new ones get 503 + `Retry-After`.
        max_body_bytes: largest request body (413 beyond).
        batch_wait_ms: how long an idle worker gathers requests into one first forward.
        device: device for a model loaded from a path.
        quantization: `"int8"` / `"int4"` weight-only quantization of a model loaded from
            a path (`gpt2kit.quantization`).

    Example:
        >>> app = create_app("path/to/saved/model", max_batch_size=8)   # doctest: +SKIP
        >>> uvicorn.run(app, port=8000)                                  # doctest: +SKIP
    """
    model, tokenizer, default_name = load_model(model, tokenizer, device, quantization)
    name = model_name or default_name
    tasks = supported_tasks(model)
    n_positions = model.config.n_positions
    prompt_limit = min(max_prompt_tokens or n_positions - 1, n_positions - 1)
    batcher = Batcher(
        model,
        tokenizer,
        max_batch_size=max_batch_size,
        queue_size=queue_size,
        batch_wait_ms=batch_wait_ms,
    )
    runner = TaskRunner(model, tokenizer)
    metrics = Metrics()
    vocab = model.config.vocab_size

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        logger.info("serving %s (%s) with tasks %s", name, type(model).__name__, ", ".join(tasks))
        try:
            yield
        finally:
            # uvicorn has already let open requests finish; the worker drains what is left.
            await asyncio.get_running_loop().run_in_executor(None, batcher.stop)

    app = FastAPI(title="gpt2kit", version=_version(), lifespan=lifespan)
    app.state.batcher, app.state.metrics, app.state.tasks = batcher, metrics, tasks

    # -- errors ---------------------------------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        # Drop "body" and the union-member tags pydantic adds ("str", "list[int]", "AnswerItem").
        loc = [str(p) for p in first.get("loc", ()) if p != "body" and not _TYPE_TAG.match(str(p))]
        if first.get("type") == "json_invalid":
            message, param = (
                f"malformed JSON body: {first.get('ctx', {}).get('error', first.get('msg'))}",
                None,
            )
        else:
            param = ".".join(loc) or None
            message = f"{param or 'body'}: {first.get('msg', 'invalid value')}"
            if "input" in first and param is not None:
                message += f" (got {json.dumps(first['input'], default=str)[:100]})"
        return APIError(400, message, param=param, code=first.get("type")).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return APIError(err.status_code, str(err.detail), type_="invalid_request_error").response()

    app.add_middleware(_Guard, api_key=api_key, max_body_bytes=max_body_bytes, metrics=metrics)

    def need(task: str) -> None:
        if task not in tasks:
            raise APIError(
                400,
                f"this model ({type(model).__name__}) cannot serve '{task}'; "
                f"it serves: {', '.join(tasks)}",
                param="model",
                code="unsupported_task",
            )

    # -- basic endpoints ------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": name,
            "tasks": tasks,
            "running": batcher.running,
            "queue_depth": batcher.queue_depth,
        }

    @app.get("/metrics")
    async def metrics_endpoint(format: str = "prometheus") -> Any:
        snapshot = _snapshot(batcher, metrics)
        if format == "json":
            return snapshot
        return PlainTextResponse(_prometheus(snapshot), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=name, created=int(metrics.started), tasks=tasks)])

    @app.get("/", response_class=HTMLResponse)
    async def playground() -> HTMLResponse:
        page = (
            resources.files("gpt2kit.serve").joinpath("playground.html").read_text(encoding="utf-8")
        )
        return HTMLResponse(page)

    # -- completions ----------------------------------------------------------------------
    def prompts_of(body: CompletionRequest) -> list[list[int]]:
        p = body.prompt
        if isinstance(p, str):
            raw: list[Any] = [p]
        elif p and all(isinstance(x, int) for x in p):
            raw = [p]
        else:
            raw = list(p)
        if not raw:
            raise APIError(400, "prompt: must not be an empty list", param="prompt")
        out = []
        for item in raw:
            ids = tokenizer.encode(item) if isinstance(item, str) else [int(t) for t in item]
            if any(t < 0 or t >= vocab for t in ids):
                raise APIError(400, f"prompt: token ids must be in [0, {vocab})", param="prompt")
            ids = ids or [batcher.eos if batcher.eos is not None else 0]
            if len(ids) > prompt_limit:
                raise APIError(
                    400,
                    f"prompt: {len(ids)} tokens, more than the {prompt_limit} allowed",
                    param="prompt",
                    code="context_length_exceeded",
                )
            out.append(ids)
        return out

    def check_unsupported(body: CompletionRequest) -> None:
        if body.logprobs:
            raise APIError(400, "logprobs: not supported by this server", param="logprobs")
        if body.echo:
            raise APIError(400, "echo: not supported by this server", param="echo")
        if body.suffix:
            raise APIError(400, "suffix: not supported by this server", param="suffix")
        if body.best_of is not None and body.best_of != (body.n or 1):
            raise APIError(400, "best_of: only best_of == n is supported", param="best_of")

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        need("completions")
        check_unsupported(body)
        start = time.perf_counter()
        prompts = prompts_of(body)
        n = body.n or 1
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise APIError(400, "stop: up to 4 non-empty strings", param="stop")
        if body.max_tokens is not None and body.max_tokens > max_tokens_cap:
            raise APIError(
                400,
                f"max_tokens: {body.max_tokens} is more than the {max_tokens_cap} allowed",
                param="max_tokens",
            )
        requested = body.max_tokens if body.max_tokens is not None else max_tokens_cap
        longest = max(len(p) for p in prompts)
        if body.max_tokens is not None and longest + requested > n_positions:
            raise APIError(
                400,
                f"max_tokens: prompt ({longest} tokens) + max_tokens ({requested}) exceeds "
                f"the model's context of {n_positions}",
                param="max_tokens",
                code="context_length_exceeded",
            )
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        reqs: list[GenRequest] = []
        for i, ids in enumerate(prompts):
            for j in range(n):
                index = i * n + j
                params = SamplingParams(
                    max_tokens=min(requested, n_positions - len(ids)),
                    temperature=1.0 if body.temperature is None else body.temperature,
                    top_p=1.0 if body.top_p is None else body.top_p,
                    top_k=body.top_k,
                    seed=None if body.seed is None else body.seed + index,
                    stop=stops,
                    presence_penalty=body.presence_penalty or 0.0,
                    frequency_penalty=body.frequency_penalty or 0.0,
                    repetition_penalty=body.repetition_penalty,
                )
                sink = (lambda k: lambda ev: loop.call_soon_threadsafe(events.put_nowait, (k, ev)))(
                    index
                )
                reqs.append(GenRequest(ids, params, sink))
        try:
            batcher.submit_generate(reqs)
        except QueueFull as err:
            raise APIError(
                503,
                f"server busy: {err}; retry shortly",
                type_="server_error",
                code="queue_full",
                headers={"Retry-After": "1"},
            ) from err
        except ShuttingDown as err:
            raise APIError(
                503,
                str(err),
                type_="server_error",
                code="shutting_down",
                headers={"Retry-After": "5"},
            ) from err
        rid = f"cmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        prompt_tokens = sum(len(p) for p in prompts) * n
        deadline = start + timeout

        async def next_event() -> tuple[int, tuple]:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError
            return await asyncio.wait_for(events.get(), left)

        def cancel_all() -> None:
            for r in reqs:
                r.cancelled = True

        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))

            def chunk(choices: list[dict], usage: dict | None = None) -> str:
                data = {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": name,
                    "choices": choices,
                }
                if include_usage:
                    data["usage"] = usage
                return f"data: {json.dumps(data)}\n\n"

            async def stream() -> AsyncIterator[str]:
                done, completion_tokens = 0, 0
                try:
                    while done < len(reqs):
                        try:
                            index, ev = await next_event()
                        except TimeoutError:
                            err = {
                                "message": f"request timed out after {timeout:g} s",
                                "type": "timeout",
                                "param": None,
                                "code": "timeout",
                            }
                            yield f"data: {json.dumps({'error': err})}\n\n"
                            return
                        if ev[0] == "text":
                            yield chunk(
                                [
                                    {
                                        "text": ev[1],
                                        "index": index,
                                        "logprobs": None,
                                        "finish_reason": None,
                                    }
                                ]
                            )
                        elif ev[0] == "done":
                            done += 1
                            completion_tokens += ev[2]
                            yield chunk(
                                [
                                    {
                                        "text": "",
                                        "index": index,
                                        "logprobs": None,
                                        "finish_reason": ev[1],
                                    }
                                ]
                            )
                        else:
                            err = {
                                "message": f"generation failed: {ev[1]}",
                                "type": "server_error",
                                "param": None,
                                "code": None,
                            }
                            yield f"data: {json.dumps({'error': err})}\n\n"
                            return
                    if include_usage:
                        usage = {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        }
                        yield chunk([], usage)
                    yield "data: [DONE]\n\n"
                    metrics.latency(time.perf_counter() - start)
                finally:
                    # Client gone, timeout or done: rows still running free their slots.
                    cancel_all()

            return StreamingResponse(
                stream(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

        texts = [""] * len(reqs)
        finish: list[str | None] = [None] * len(reqs)
        completion_tokens = 0
        done = 0
        try:
            while done < len(reqs):
                index, ev = await next_event()
                if ev[0] == "text":
                    texts[index] += ev[1]
                elif ev[0] == "done":
                    finish[index] = ev[1]
                    completion_tokens += ev[2]
                    done += 1
                else:
                    raise APIError(500, f"generation failed: {ev[1]}", type_="server_error")
        except TimeoutError as err:
            raise APIError(
                504, f"request timed out after {timeout:g} s", type_="timeout", code="timeout"
            ) from err
        finally:
            cancel_all()
        return CompletionResponse(
            id=rid,
            created=created,
            model=name,
            choices=[
                CompletionChoice(text=t, index=k, finish_reason=f)
                for k, (t, f) in enumerate(zip(texts, finish))
            ],  # type: ignore[arg-type]
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
        )

    # -- task endpoints -------------------------------------------------------------------
    async def run_task(task: str, items: list[dict]) -> TaskResponse:
        need(task)
        fn = runner.function(task)
        try:
            futures = [batcher.submit_task(task, it, fn) for it in items]
        except QueueFull as err:
            raise APIError(
                503,
                f"server busy: {err}; retry shortly",
                type_="server_error",
                code="queue_full",
                headers={"Retry-After": "1"},
            ) from err
        except ShuttingDown as err:
            raise APIError(503, str(err), type_="server_error", code="shutting_down") from err
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), timeout
            )
        except TimeoutError as err:
            for f in futures:
                f.cancel()
            raise APIError(
                504, f"request timed out after {timeout:g} s", type_="timeout", code="timeout"
            ) from err
        except ValueError as err:
            raise APIError(400, str(err), param="input") from err
        return TaskResponse(model=name, data=list(results))

    def texts_of(value: str | list[str]) -> list[dict]:
        items = [value] if isinstance(value, str) else list(value)
        if not items:
            raise APIError(400, "input: must not be empty", param="input")
        for t in items:
            if len(tokenizer.encode(t)) > prompt_limit:
                raise APIError(
                    400, f"input: a text is longer than {prompt_limit} tokens", param="input"
                )
        return [{"text": t} for t in items]

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest) -> TaskResponse:
        need("classify")
        out = await run_task("classify", texts_of(body.input))
        if body.top_k:
            out.data = [d[: body.top_k] if isinstance(d, list) else d for d in out.data]
        return out

    @app.post("/v1/tag")
    async def tag(body: TagRequest) -> TaskResponse:
        need("tag")
        return await run_task("tag", texts_of(body.input))

    @app.post("/v1/answer")
    async def answer(body: AnswerRequest) -> TaskResponse:
        need("answer")
        items = [body.input] if not isinstance(body.input, list) else body.input
        return await run_task("answer", [it.model_dump() for it in items])

    @app.post("/v1/choose")
    async def choose(body: ChooseRequest) -> TaskResponse:
        need("choose")
        items = [body.input] if not isinstance(body.input, list) else body.input
        return await run_task("choose", [it.model_dump() for it in items])

    @app.post("/v1/score")
    async def score(body: ScoreRequest) -> TaskResponse:
        need("score")
        return await run_task("score", texts_of(body.input))

    @app.post("/v1/embed")
    async def embed(body: EmbedRequest) -> TaskResponse:
        need("embed")
        return await run_task("embed", texts_of(body.input))

    return app


def _version() -> str:
    from .. import __version__

    return __version__


def _snapshot(batcher: Batcher, metrics: Metrics) -> dict[str, Any]:
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
        "latency_seconds": metrics.percentiles(),
    }


def _prometheus(s: dict[str, Any]) -> str:
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
        "# TYPE gpt2kit_request_latency_seconds summary",
        *(
            f'gpt2kit_request_latency_seconds{{quantile="{q}"}} {s["latency_seconds"][k]:.6f}'
            for q, k in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))
        ),
    ]
    return "\n".join(lines) + "\n"
