"""What every router shares: the model, its limits, the batcher, and the submit-or-503 helper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from ..adapters import BASE
from .adapters import AdapterSpecError, adapter_for, model_ids
from .batching import Batcher, QueueFull, ShuttingDown
from .errors import APIError
from .metrics import Metrics
from .tasks import TaskRunner

T = TypeVar("T")


@dataclass
class ServerState:
    """One loaded model and the settings the routes enforce (built by `create_app`)."""

    model: Any
    tokenizer: Any
    name: str
    tasks: list[str]
    batcher: Batcher
    runner: TaskRunner
    metrics: Metrics
    prompt_limit: int
    max_tokens_cap: int
    timeout: float
    queue_size: int
    chat_template: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # LoRA adapters loaded on `model` (`--adapter NAME=PATH`); requests pick one by name
    adapters: list[str] = field(default_factory=list)

    @property
    def model_ids(self) -> list[str]:
        """What `/v1/models` lists: the base model's name, then each adapter's."""
        return model_ids(self.name, self.adapters)

    def adapter_for(self, requested: str | None) -> str:
        """The adapter a generation request's `"model"` picks (`BASE`: the base model).

        Without adapters any name means the one model (clients send whatever name they
        were configured with); with adapters a name that is neither the base's nor an
        adapter's is a 404 `model_not_found`, never a silent fallback to the base.
        """
        if not self.adapters:
            return BASE
        try:
            return adapter_for(requested, self.name, self.adapters)
        except AdapterSpecError as err:
            raise APIError(404, str(err), param="model", code="model_not_found") from err

    def base_only(self, requested: str | None) -> None:
        """Task and embedding endpoints run the base model: naming an adapter is a 400."""
        if self.adapter_for(requested) != BASE:
            raise APIError(
                400,
                f"model: adapter {requested!r} serves /v1/completions and "
                f"/v1/chat/completions only; send model {self.name!r} (the base) here",
                param="model",
                code="adapter_not_supported",
            )

    def reported_name(self, requested: str | None) -> str:
        """The `"model"` a response reports: the adapter's name, else the base's."""
        return requested if self.adapter_for(requested) != BASE else self.name  # type: ignore[return-value]

    @property
    def vocab(self) -> int:
        return int(self.model.config.vocab_size)

    @property
    def n_positions(self) -> int:
        return int(self.model.config.n_positions)

    def need(self, task: str) -> None:
        """400 `unsupported_task` unless the loaded model serves `task`."""
        if task not in self.tasks:
            raise APIError(
                400,
                f"this model ({type(self.model).__name__}) cannot serve '{task}'; "
                f"it serves: {', '.join(self.tasks)}",
                param="model",
                code="unsupported_task",
            )

    def check_rows(self, rows: int, param: str) -> None:
        """400 for a request whose sequences could never fit the queue, before any work.

        A 503 would tell the client to retry, and it would retry forever.
        """
        if rows > self.queue_size:
            raise APIError(
                400,
                f"{param}: this request asks for {rows} sequences (prompts x n), more than "
                f"the {self.queue_size} the server can ever hold (--queue-size)",
                param=param,
                code="too_many_sequences",
            )

    def submit(self, fn: Callable[..., T], *args: Any) -> T:
        """Call `batcher.submit_*`; a full queue or a shutdown becomes a 503 with Retry-After."""
        try:
            return fn(*args)
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

    def timed_out(self) -> APIError:
        return APIError(
            504, f"request timed out after {self.timeout:g} s", type_="timeout", code="timeout"
        )


def get_state(request: Request) -> ServerState:
    """FastAPI dependency: the `ServerState` of the app serving this request."""
    return request.app.state.server


State = Annotated[ServerState, Depends(get_state)]
