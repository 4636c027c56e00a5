"""Running a request's sequences through the batcher and gathering their events.

Shared by `/v1/completions` and `/v1/chat/completions`: both turn one HTTP request into
`prompts x n` `GenRequest`s, submit them together (all or none), then either wait for
every sequence (non-stream) or forward each event as it comes (stream).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..adapters import BASE
from .batching import GenRequest, SamplingParams
from .errors import APIError
from .state import ServerState


@dataclass
class Result:
    """One finished sequence: its text, why it ended, and its token count."""

    text: str = ""
    finish: str | None = None
    n_tokens: int = 0
    tokens: list[Any] = field(default_factory=list)  # `TokenInfo`s when logprobs were asked
    prompt_ids: list[int] = field(default_factory=list)
    prompt: list[Any] | None = None  # the prompt's `TokenInfo`s when prompt logprobs were asked


class Run:
    """The sequences of one request, submitted together, with their event queue."""

    def __init__(
        self,
        state: ServerState,
        prompts: list[list[int]],
        n: int,
        params: Callable[[int, list[int]], SamplingParams],
        adapter: str = BASE,
    ):
        self.state = state
        self.start = time.perf_counter()
        self.deadline = self.start + state.timeout
        loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.reqs: list[GenRequest] = []
        for i, ids in enumerate(prompts):
            for j in range(n):
                index = i * n + j
                sink = (
                    lambda k: lambda ev: loop.call_soon_threadsafe(self.events.put_nowait, (k, ev))
                )(index)
                self.reqs.append(GenRequest(ids, params(index, ids), sink, adapter=adapter))
        state.submit(state.batcher.submit_generate, self.reqs)

    async def next_event(self) -> tuple[int, tuple]:
        left = self.deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError
        return await asyncio.wait_for(self.events.get(), left)

    def cancel(self) -> None:
        for r in self.reqs:
            r.cancelled = True

    async def results(self) -> list[Result]:
        """Wait for every sequence (504 past the deadline, 500 if one failed)."""
        out = [Result() for _ in self.reqs]
        done = 0
        try:
            while done < len(self.reqs):
                index, ev = await self.next_event()
                if ev[0] == "text":
                    out[index].text += ev[1]
                    out[index].tokens.extend(ev[2])
                elif ev[0] == "prompt":
                    out[index].prompt = ev[1]
                elif ev[0] == "done":
                    out[index].finish, out[index].n_tokens = ev[1], ev[2]
                    done += 1
                else:
                    raise _failed(ev[1])
        except TimeoutError as err:
            raise self.state.timed_out() from err
        finally:
            self.cancel()
        return out

    async def stream(self) -> AsyncIterator[tuple[int, tuple]]:
        """Each event as it comes; an `("error", APIError)` event ends the stream."""
        done = 0
        try:
            while done < len(self.reqs):
                try:
                    index, ev = await self.next_event()
                except TimeoutError:
                    yield -1, ("error", self.state.timed_out())
                    return
                if ev[0] == "error":
                    yield index, ("error", _failed(ev[1]))
                    return
                if ev[0] == "done":
                    done += 1
                yield index, ev
            self.state.metrics.latency(time.perf_counter() - self.start)
        finally:
            # Client gone, timeout or done: rows still running free their slots.
            self.cancel()


def _failed(err: BaseException) -> APIError:
    if isinstance(err, APIError):
        return err
    return APIError(500, f"generation failed: {err}", type_="server_error")
