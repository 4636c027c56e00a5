"""Dynamic batching: one worker thread owns the model and batches every request it gets.

Generation is *continuously* batched. The worker keeps one running batch of rows (one
row = one sequence being generated) that share a single `KVCache`; rows may sit at
different lengths, so the cache is left-padded and each row carries its own attention
mask and positions. Between two decode steps the worker

1. drops rows that finished or whose client went away (their cache rows are removed and
   the columns no remaining row uses are trimmed off the left),
2. prefills the requests that arrived (all of them in one left-padded forward, as many
   as fit `max_batch_size`) and merges their caches into the running batch, and
3. runs one decode step over every running row (`logits_to_keep=1`).

So a request waits at most one decode step to join, and a long generation never holds
short ones back. When the worker is idle, the first request that arrives waits
`batch_wait_ms` for others so they share one prefill.

Task requests (classify, tag, embed, ...) are batched too: requests for the same task
that arrive together are handed to the task function as one list, between decode steps.

Sampling matches `gpt2kit.generation`: the same logits processors
(`build_processors`), and a row with a seed draws with its own `torch.Generator` exactly
as `generate(..., seed=...)` does for one prompt, so a seeded request gives the same text
whether it ran alone or in a batch of 16 (up to float rounding of batched matmuls).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from ..adapters import BASE
from ..decode import cpu_decoder
from ..generation import GenerationConfig, IncrementalDecoder, build_processors
from ..generation.processors import apply_processors
from ..models.cache import KVCache
from .adapters import base_only, rows_context

logger = logging.getLogger("gpt2kit.serve")

# Spare cache columns allocated on each merge so the next decode steps write in place.
_HEADROOM = 64


class QueueFull(RuntimeError):
    """Raised by `submit_*` when `queue_size` requests are already waiting."""


class ShuttingDown(RuntimeError):
    """Raised by `submit_*` once `stop()` was called."""


@dataclass
class SamplingParams:
    """How one sequence is decoded (OpenAI names; `temperature=0` is greedy)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    seed: int | None = None
    stop: Sequence[str] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float | None = None
    # Log-probabilities of the model's own distribution (log-softmax of the raw logits,
    # before bias, constraints and sampling processors), with this many alternatives.
    # None: not computed. `prompt_logprobs` is the same for the prompt's tokens (echo).
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    logit_bias: dict[int, float] | None = None
    # A `gpt2kit.serve.constrained.Grammar`: only tokens it allows are sampled, and the
    # sequence stops (finish "stop") when the grammar is complete.
    grammar: Any = None


@dataclass
class TokenInfo:
    """One token of a sequence with its log-probability (None: the first prompt token).

    `offset` is where the token's text starts in the sequence's text (completion text,
    or prompt text for prompt tokens); `top` the `(token id, logprob)` alternatives,
    most likely first.
    """

    id: int
    logprob: float | None
    top: list[tuple[int, float]]
    offset: int = 0


@dataclass
class GenRequest:
    """One sequence to generate; events go to `sink` from the worker thread.

    `sink(("prompt", [TokenInfo]))` first when prompt logprobs were asked; then
    `sink(("text", piece, [TokenInfo]))` for each released piece of text (the list holds
    the tokens that piece completes when logprobs were asked, else it is empty), then
    exactly one of `sink(("done", finish_reason, completion_tokens))` or
    `sink(("error", exception))`. Set `cancelled = True` (from any thread) to free the
    row at the next step. `adapter`: the LoRA adapter this row decodes with (`BASE`:
    none); rows of different adapters share the batch (`serve/adapters.py`).
    """

    prompt_ids: list[int]
    params: SamplingParams
    sink: Callable[[tuple], None]
    cancelled: bool = False
    adapter: str = BASE
    enqueued_at: float = field(default_factory=time.perf_counter)


@dataclass
class _TaskJob:
    key: str
    item: Any
    fn: Callable[[list[Any]], list[Any]]
    future: Future


class _Row:
    """A running sequence: its tokens, sampler state and text released so far."""

    def __init__(self, req: GenRequest, tokenizer: Any, eos: int | None):
        p = req.params
        self.req = req
        self.tokens = list(req.prompt_ids)
        self.n_prompt = len(req.prompt_ids)
        self.pos = self.n_prompt  # position of the next token fed to the model
        self.n_new = 0
        self.decoder = IncrementalDecoder(tokenizer, {eos} if eos is not None else set())
        self.text = ""
        self.sent = 0
        self.counts: dict[int, int] = {}
        self.infos: list[TokenInfo] = []  # tokens whose logprobs are not released yet
        self.matcher = p.grammar.matcher() if p.grammar is not None else None
        self.bias: tuple[torch.Tensor, torch.Tensor] | None = None
        if p.logit_bias:
            ids, values = zip(*sorted(p.logit_bias.items()))
            self.bias = torch.tensor(ids), torch.tensor(values, dtype=torch.float32)
        self.greedy = p.temperature == 0
        self.generator = None
        if not self.greedy and p.seed is not None:
            self.generator = torch.Generator().manual_seed(int(p.seed))
        cfg = GenerationConfig(
            do_sample=not self.greedy,
            temperature=p.temperature if not self.greedy else 1.0,
            top_k=p.top_k or None,
            top_p=p.top_p,
            repetition_penalty=p.repetition_penalty or 1.0,
        )
        # `max_length`: where the row ends, for processors that act at the last position
        # (a forced EOS); the server sets none of them today, but the length is known.
        self.processors = build_processors(
            cfg,
            prompt_length=self.n_prompt,
            eos_token_ids=[],
            max_length=self.n_prompt + max(p.max_tokens, 0),
        )


class Batcher:
    """The worker thread that owns `model` and serves generation and task requests.

    Args:
        model: a gpt2kit model with an LM head (for generation); any model for tasks.
        tokenizer: the model's tokenizer (`decode`, `eos_token_id`).
        max_batch_size: most sequences decoded together (and task items per call).
        queue_size: most requests waiting to start; more raise `QueueFull`.
        batch_wait_ms: how long an idle worker gathers requests before the first forward.

    Example:
        >>> b = Batcher(model, tokenizer).start()           # doctest: +SKIP
        >>> b.submit_generate(GenRequest([464], SamplingParams(), print))  # doctest: +SKIP
        >>> b.stop()                                        # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int = 16,
        queue_size: int = 256,
        batch_wait_ms: float = 5.0,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model = model
        # What runs the prefills and steps: on CPU the decoder of `gpt2kit.decode`, built
        # for the largest batch (the batch size changes every step; up to 32 rows the
        # native kernel on its weight arena, more with oneDNN-packed fp32 weights), else
        # the model itself.
        self._forward = cpu_decoder(model, max_batch_size) or model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.queue_size = queue_size
        self.batch_wait = batch_wait_ms / 1000.0
        eos = getattr(model.config, "eos_token_id", None)
        self.eos = eos if isinstance(eos, int) else getattr(tokenizer, "eos_token_id", None)
        self.n_positions = model.config.n_positions
        self._inbox: queue.Queue = queue.Queue()
        self._waiting: deque[GenRequest] = deque()
        self._pending = 0  # requests submitted and not yet started (inbox + waiting)
        self._lock = threading.Lock()
        self._rows: list[_Row] = []
        self._cache: KVCache | None = None
        self._mask: torch.Tensor | None = None  # (S, L) bool, True = real token
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Counters read by /metrics (plain ints: written by the worker only).
        self.steps = 0
        self.generated_tokens = 0
        self.prompt_tokens = 0
        self.batched_rows = 0  # sum of batch sizes over steps (mean = batched_rows / steps)
        # decode steps whose rows took more than one adapter (the base counts as one)
        self.mixed_adapter_steps = 0

    # -- public API (any thread) --------------------------------------------------------------
    def start(self) -> Batcher:
        """Start the worker (again after `stop()`: an ASGI test client runs the app's
        lifespan, so start and stop, around each call)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="gpt2kit-batcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Refuse new requests, finish the running and waiting ones, then end the worker."""
        self._stopping.set()
        self._inbox.put(None)  # wake an idle worker
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def queue_depth(self) -> int:
        """Requests submitted and not started yet."""
        return self._pending

    @property
    def running(self) -> int:
        """Sequences in the running batch."""
        return len(self._rows)

    def submit_generate(self, requests: Sequence[GenRequest]) -> None:
        """Queue sequences (all or none: a request's `n` choices are accepted together)."""
        self._admit(len(requests))
        for r in requests:
            self._inbox.put(r)

    def submit_task(self, key: str, item: Any, fn: Callable[[list[Any]], list[Any]]) -> Future:
        """Queue one task item; items with the same `key` that arrive together go to one `fn` call."""
        self._admit(1)
        fut: Future = Future()
        self._inbox.put(_TaskJob(key, item, fn, fut))
        return fut

    def _admit(self, n: int) -> None:
        if self._stopping.is_set():
            raise ShuttingDown("the server is shutting down")
        with self._lock:
            if self._pending + n > self.queue_size:
                raise QueueFull(
                    f"{self._pending} requests are already waiting (queue_size={self.queue_size})"
                )
            self._pending += n

    # -- worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                idle = not self._rows and not self._waiting
                if idle and self._stopping.is_set() and self._inbox.empty():
                    return
                tasks = self._collect(block=idle)
                if tasks:
                    self._run_tasks(tasks)
                try:
                    self._drop_finished()
                    self._join_waiting()
                    self._drop_finished()  # rows that ended at their first token
                    if self._rows:
                        self._decode_step()
                except Exception as err:  # a failed forward must not kill the server
                    logger.exception("batch step failed")
                    for row in self._rows:
                        row.req.sink(("error", err))
                    self._rows, self._cache, self._mask = [], None, None

    def _collect(self, block: bool) -> list[_TaskJob]:
        """Move inbox items to the waiting line; return task jobs. Blocks (briefly) when idle."""
        items: list[Any] = []
        if block:
            try:
                items.append(self._inbox.get(timeout=0.1))
            except queue.Empty:
                return []
            # Gather whatever else arrives within the batching window.
            deadline = time.perf_counter() + self.batch_wait
            while (left := deadline - time.perf_counter()) > 0:
                try:
                    items.append(self._inbox.get(timeout=left))
                except queue.Empty:
                    break
        while True:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        tasks = []
        for item in items:
            if isinstance(item, GenRequest):
                self._waiting.append(item)
            elif isinstance(item, _TaskJob):
                tasks.append(item)
        return tasks

    def _started(self, n: int) -> None:
        with self._lock:
            self._pending -= n

    def _run_tasks(self, jobs: list[_TaskJob]) -> None:
        self._started(len(jobs))
        groups: dict[str, list[_TaskJob]] = {}
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                groups.setdefault(job.key, []).append(job)
        for group in groups.values():
            for start in range(0, len(group), self.max_batch_size):
                chunk = group[start : start + self.max_batch_size]
                try:
                    # task functions run the base model: adapters serve generation only
                    with base_only(self.model):
                        results = chunk[0].fn([j.item for j in chunk])
                    for job, res in zip(chunk, results, strict=True):
                        job.future.set_result(res)
                except Exception as err:
                    for job in chunk:
                        job.future.set_exception(err)

    def _drop_finished(self) -> None:
        keep = [i for i, r in enumerate(self._rows) if not r.req.cancelled]
        if len(keep) == len(self._rows):
            return
        self._rows = [self._rows[i] for i in keep]
        if not self._rows:
            self._cache, self._mask = None, None
            return
        index = torch.tensor(keep)
        mask = self._mask.index_select(0, index)  # type: ignore[union-attr]
        # Columns no remaining row attends to (the left padding of a longer row that left).
        first = int(mask.any(0).nonzero()[0])
        cache = self._cache
        assert cache is not None
        for layer in range(cache.n_layer):
            cache.keys[layer] = cache.keys[layer].index_select(0, index)[:, :, first:]  # type: ignore[union-attr]
            cache.values[layer] = cache.values[layer].index_select(0, index)[:, :, first:]  # type: ignore[union-attr]
        cache.length -= first
        self._mask = mask[:, first:]

    def _join_waiting(self) -> None:
        free = self.max_batch_size - len(self._rows)
        rows: list[_Row] = []
        while self._waiting and len(rows) < free:
            req = self._waiting.popleft()
            self._started(1)
            if req.cancelled:
                continue
            try:
                rows.append(_Row(req, self.tokenizer, self.eos))
            except Exception as err:  # a bad row fails alone, before it touches the batch
                self._fail(req, err)
        if not rows:
            return
        T = max(r.n_prompt for r in rows)
        ids = torch.full((len(rows), T), self.eos or 0, dtype=torch.long)
        mask = torch.zeros(len(rows), T, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, T - r.n_prompt :] = torch.tensor(r.tokens)
            mask[i, T - r.n_prompt :] = True
        fresh = KVCache(self.model.config.n_layer, capacity=T)
        echo = [r for r in rows if r.req.params.prompt_logprobs is not None]
        try:
            with rows_context(self.model, [r.req.adapter for r in rows]):
                out = self._forward(
                    input_ids=ids,
                    attention_mask=None if bool(mask.all()) else mask,
                    past_key_values=fresh,
                    use_cache=True,
                    logits_to_keep=1,
                    output_hidden_states=bool(echo) or None,
                )
            for i, r in enumerate(rows):
                if r.req.params.prompt_logprobs is not None:
                    hidden = out.hidden_states[-1][i, T - r.n_prompt :]
                    r.req.sink(("prompt", self._prompt_logprobs(r, hidden)))
        except Exception as err:
            # The prefill ran on its own cache: the running batch is untouched and goes on.
            logger.exception("prefill of %d new rows failed", len(rows))
            for r in rows:
                self._fail(r.req, err)
            return
        self.prompt_tokens += sum(r.n_prompt for r in rows)
        self._merge(fresh, mask)
        self._rows.extend(rows)
        sample = [i for i, r in enumerate(rows) if r.req.params.max_tokens > 0]
        for r in rows:
            if r.req.params.max_tokens <= 0:  # score the prompt only (echo, max_tokens 0)
                r.req.sink(("done", "length", 0))
                r.req.cancelled = True
        if sample:
            self._sample([rows[i] for i in sample], out.logits[sample, -1])

    def _prompt_logprobs(self, r: _Row, hidden: torch.Tensor) -> list[TokenInfo]:
        """Each prompt token's logprob under the model given the tokens before it.

        The logits come from the final hidden states through the LM head in chunks of
        256 positions, so a 1024-token prompt never holds `[1024, vocab]` floats at once.
        """
        k = r.req.params.prompt_logprobs or 0
        infos = [TokenInfo(r.tokens[0], None, [])]
        head = self.model.lm_head
        for start in range(0, r.n_prompt - 1, 256):
            stop = min(start + 256, r.n_prompt - 1)
            # (a 2-D input: one "row" per position, all on this row's adapter)
            with rows_context(self.model, [r.req.adapter] * (stop - start)):
                lp = head(hidden[start:stop]).float().log_softmax(-1)
            targets = torch.tensor(r.tokens[start + 1 : stop + 1])
            chosen = lp.gather(1, targets[:, None])[:, 0].tolist()
            top = lp.topk(k, -1) if k else None
            for j, tok in enumerate(targets.tolist()):
                alts = (
                    list(zip(top.indices[j].tolist(), top.values[j].tolist()))
                    if top is not None
                    else []
                )
                infos.append(TokenInfo(tok, chosen[j], alts))
        return infos

    def _fail(self, req: GenRequest, err: BaseException) -> None:
        """End one sequence with an error; the rows batched with it are not affected."""
        req.sink(("error", err))
        req.cancelled = True  # leaves the batch at the next step

    def _merge(self, fresh: KVCache, fresh_mask: torch.Tensor) -> None:
        """Append the rows of `fresh` to the running cache, right-aligning both."""
        if self._cache is None:
            self._cache, self._mask = fresh, fresh_mask
            return
        old, old_mask = self._cache, self._mask
        assert old_mask is not None
        L_old, L_new = old.length, fresh.length
        L = max(L_old, L_new)
        S_old, S_new = old_mask.shape[0], fresh_mask.shape[0]
        for layer in range(old.n_layer):
            for bufs in (old.keys, old.values):
                ref = bufs[layer]
                new_buf = (fresh.keys if bufs is old.keys else fresh.values)[layer]
                assert ref is not None and new_buf is not None
                B, H, _, hs = ref.shape
                merged = ref.new_zeros(S_old + S_new, H, L + _HEADROOM, hs)
                merged[:S_old, :, L - L_old : L] = ref[:, :, :L_old]
                merged[S_old:, :, L - L_new : L] = new_buf[:, :, :L_new]
                bufs[layer] = merged
        mask = torch.zeros(S_old + S_new, L, dtype=torch.bool)
        mask[:S_old, L - L_old :] = old_mask
        mask[S_old:, L - L_new :] = fresh_mask
        old.length, old.capacity = L, None
        self._mask = mask

    def _decode_step(self) -> None:
        assert self._mask is not None
        S = len(self._rows)
        ids = torch.tensor([[r.tokens[-1]] for r in self._rows])
        pos = torch.tensor([[r.pos] for r in self._rows])
        self._mask = torch.cat([self._mask, torch.ones(S, 1, dtype=torch.bool)], dim=1)
        # row i of the batch is self._rows[i] (the cache and mask keep that order through
        # `_drop_finished` and `_merge`), so this list gives each row its own adapter
        adapters = [r.req.adapter for r in self._rows]
        with rows_context(self.model, adapters):
            out = self._forward(
                input_ids=ids,
                attention_mask=self._mask,
                position_ids=pos,
                past_key_values=self._cache,
                use_cache=True,
                logits_to_keep=1,
            )
        for r in self._rows:
            r.pos += 1
        self.steps += 1
        if len(set(adapters)) > 1:
            self.mixed_adapter_steps += 1
        self.batched_rows += S
        self._sample(self._rows, out.logits[:, -1])

    def _sample(self, rows: list[_Row], logits: torch.Tensor) -> None:
        """Pick each row's next token from `logits [S, V]`, release text, finish rows.

        Each row is sampled on its own: a row whose processors fail or give no valid
        distribution (NaN, all masked) gets its error, and the others go on.
        """
        logits = logits.float()
        greedy_ids = logits.argmax(-1).tolist()
        picked: list[int | None] = []
        for i, r in enumerate(rows):
            tok = None
            if not r.req.cancelled:  # finished or abandoned since the forward: never sample
                try:
                    tok = self._pick(r, logits[i : i + 1], greedy_ids[i])
                except Exception as err:
                    logger.warning("row failed while sampling: %s", err)
                    self._fail(r.req, err)
            picked.append(tok)
        infos = self._logprobs(rows, logits, picked)
        for r, tok, info in zip(rows, picked, infos, strict=True):
            if tok is None:
                continue
            try:
                self._advance(r, tok, info)
            except Exception as err:
                logger.warning("row failed after sampling: %s", err)
                self._fail(r.req, err)

    @staticmethod
    def _logprobs(
        rows: list[_Row], logits: torch.Tensor, picked: list[int | None]
    ) -> list[TokenInfo | None]:
        """The picked tokens' logprobs under the raw logits, with top-k alternatives.

        Batched: one log-softmax, one gather and one top-k over the rows that asked,
        not per-row work.
        """
        want = [r.req.params.logprobs if t is not None else None for r, t in zip(rows, picked)]
        ask = [i for i, k in enumerate(want) if k is not None]
        out: list[TokenInfo | None] = [None] * len(rows)
        if not ask:
            return out
        # (log_softmax is one fused kernel: faster than logsumexp's several passes)
        lp = (logits if len(ask) == len(rows) else logits[ask]).log_softmax(-1)
        chosen = lp.gather(1, torch.tensor([[picked[i]] for i in ask]))[:, 0].tolist()
        k = max(want[i] or 0 for i in ask)
        top_i: list[list[int]] = [[] for _ in ask]
        top_v: list[list[float]] = [[] for _ in ask]
        if k:
            top = lp.topk(k, -1)
            top_i, top_v = top.indices.tolist(), top.values.tolist()
        for j, i in enumerate(ask):
            n = want[i] or 0
            alts = list(zip(top_i[j][:n], top_v[j][:n]))
            out[i] = TokenInfo(picked[i], chosen[j], alts)  # type: ignore[arg-type]
        return out

    def _pick(self, r: _Row, scores: torch.Tensor, greedy_id: int) -> int:
        p = r.req.params
        plain = not (r.processors or p.presence_penalty or p.frequency_penalty or r.bias)
        if r.greedy and plain and r.matcher is None:
            return greedy_id
        if r.bias is not None:
            scores = scores.clone()
            scores[0].index_add_(0, r.bias[0], r.bias[1])
        if r.matcher is not None:
            scores = r.matcher.mask(scores)
        if p.presence_penalty or p.frequency_penalty:
            scores = scores.clone()
            for t, c in r.counts.items():
                scores[0, t] -= p.presence_penalty + p.frequency_penalty * c
        if r.processors:
            scores = apply_processors(r.processors, torch.tensor([r.tokens]), scores)
        if torch.isnan(scores).any() or not bool((scores > -torch.inf).any()):
            raise ValueError(
                "sampling produced no valid distribution (NaN or every token masked); "
                "check temperature, top_p, top_k, logit_bias and the penalties"
            )
        if r.greedy:
            return int(scores.argmax(-1))
        probs = scores.softmax(-1)
        if not bool(torch.isfinite(probs).all()):
            raise ValueError("sampling produced non-finite probabilities; check temperature")
        return int(torch.multinomial(probs, 1, generator=r.generator)[0, 0])

    def _advance(self, r: _Row, tok: int, info: TokenInfo | None = None) -> None:
        r.tokens.append(tok)
        r.n_new += 1
        r.counts[tok] = r.counts.get(tok, 0) + 1
        self.generated_tokens += 1
        p = r.req.params
        finish = None
        if info is not None:
            info.offset = len(r.text)
            r.infos.append(info)
        if self.eos is not None and tok == self.eos:
            finish = "stop"
        else:
            r.text += r.decoder.push(tok)
            if r.matcher is not None:
                r.matcher.consume(tok)
                if r.matcher.done():
                    finish = "stop"  # the grammar is complete: nothing else may follow
        if finish is None and (r.n_new >= p.max_tokens or r.pos + 1 >= self.n_positions):
            finish = "length"
        if finish is not None:
            r.text += r.decoder.flush()
        end = len(r.text)
        if p.stop:
            cut = _find_stop(r.text, p.stop)
            if cut is not None:
                end, finish = cut, "stop"
            elif finish is None:
                # Hold back a tail that may still become a stop string.
                end -= _partial_stop(r.text, p.stop)
        released: list[TokenInfo] = []
        if r.infos:
            # A token's logprob goes out with the text it completes; at the end, every
            # token whose text starts before the (possibly cut) end of the text.
            n = 0
            for j, t in enumerate(r.infos):
                t_end = r.infos[j + 1].offset if j + 1 < len(r.infos) else len(r.text)
                if finish is None:
                    ok = t_end <= end and not (j + 1 == len(r.infos) and r.decoder.pending)
                else:
                    ok = t.offset < end or t.offset == t_end
                if not ok:
                    break
                n += 1
            released, r.infos = r.infos[:n], r.infos[n:]
            if finish is not None:
                r.infos = []
        if end > r.sent or released:
            r.req.sink(("text", r.text[r.sent : max(end, r.sent)], released))
            r.sent = max(end, r.sent)
        if finish is not None:
            r.req.sink(("done", finish, r.n_new))
            r.req.cancelled = True  # leaves the batch at the next step


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the text ends (before the earliest stop string), or None without one."""
    hits = [i for i in (text.find(s) for s in stops) if i != -1]
    return min(hits) if hits else None


def _partial_stop(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that begins some stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
