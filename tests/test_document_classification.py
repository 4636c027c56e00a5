"""GPT2ForDocumentClassification: windows, aggregation, micro-batches, bounded memory, learning."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap

import pytest
import torch

import gpt2kit.models.document_classification as dc
from gpt2kit.models.document_classification import GPT2ForDocumentClassification, document_windows
from harness import ModelCase, check_model_case, tiny_config


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from threads; on a busy machine OpenMP threads spin-wait.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def build(seed: int = 0, **overrides) -> GPT2ForDocumentClassification:
    torch.manual_seed(seed)
    cfg = {
        "num_labels": 3,
        "n_positions": 16,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        **overrides,
    }
    return GPT2ForDocumentClassification(tiny_config(**cfg))


def random_docs(lengths, seed=0):
    rng = random.Random(seed)
    return [[rng.randrange(99) for _ in range(n)] for n in lengths]


# -- windows ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "length,window,stride",
    [(1, 8, 4), (8, 8, 4), (9, 8, 4), (100, 16, 0), (100, 16, 15), (37, 10, 3)],
)
def test_windows_cover_the_document_with_the_given_overlap(length, window, stride):
    spans = document_windows(length, window, stride)
    covered = set()
    for s, e in spans:
        assert 0 <= s < e <= length and e - s == min(window, length)
        covered |= set(range(s, e))
    assert covered == set(range(length))
    assert spans[-1][1] == length
    for (_, e0), (s1, _) in zip(spans[:-2], spans[1:-1]):
        assert (
            e0 - s1 == stride
        )  # consecutive windows share `stride` tokens (the last is end-aligned)


def test_bad_windows_and_documents_are_clear_errors():
    with pytest.raises(ValueError, match="overlap"):
        document_windows(100, 8, 8)
    with pytest.raises(ValueError, match="overlap"):
        build(window_size=8, stride=12)
    with pytest.raises(ValueError, match="window_size"):
        build(window_size=32)
    with pytest.raises(ValueError, match="doc_aggregation"):
        build(doc_aggregation="sum")
    model = build()
    with pytest.raises(ValueError, match="document 1 is empty"):
        model(documents=[[1, 2], []])
    with pytest.raises(ValueError, match="no documents"):
        model(documents=[])


# -- numbers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("aggregation", ["mean", "max", "attention"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_matches_a_manual_window_loop(aggregation, pooling):
    model = build(doc_aggregation=aggregation, window_pooling=pooling, stride=5).eval()
    docs = random_docs([70, 3, 16, 41], seed=1)
    with torch.no_grad():
        out = model(documents=docs, window_batch_size=3)
        want = []
        for doc in docs:
            vecs = []
            for s, e in document_windows(len(doc), 16, 5):
                h = model.transformer(torch.tensor([doc[s:e]])).last_hidden_state[0]
                vecs.append(h[-1] if pooling == "last" else h.mean(0))
            v = torch.stack(vecs)
            if aggregation == "mean":
                want.append(v.mean(0))
            elif aggregation == "max":
                want.append(v.amax(0))
            else:
                w = model.aggregator.query(v).squeeze(-1).softmax(-1)
                want.append((w[:, None] * v).sum(0))
        want = model.score(torch.stack(want))
    torch.testing.assert_close(out.logits, want, atol=1e-5, rtol=0)
    if aggregation == "attention":
        assert [len(w) for w in out.window_weights] == [
            len(document_windows(len(d), 16, 5)) for d in docs
        ]


def test_window_batch_size_and_padded_input_do_not_change_the_result():
    model = build(doc_aggregation="mean").eval()
    docs = random_docs([50, 9, 33], seed=2)
    ids = torch.zeros(3, 50, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, d in enumerate(docs):
        ids[i, : len(d)] = torch.tensor(d)
        mask[i, : len(d)] = 1
    with torch.no_grad():
        a = model(documents=docs, window_batch_size=1).logits
        b = model(documents=docs, window_batch_size=100).logits
        c = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=0)


def test_checkpointed_micro_batches_give_exact_gradients(monkeypatch):
    model = build(doc_aggregation="attention", stride=4).train()
    docs = random_docs([100, 7, 50], seed=3)
    labels = torch.tensor([0, 2, 1])

    def grads(window_batch_size):
        model.zero_grad()
        model(documents=docs, labels=labels, window_batch_size=window_batch_size).loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    with_checkpoint = grads(3)
    monkeypatch.setattr(dc, "checkpoint", lambda fn, *args, **kwargs: fn(*args))
    plain = grads(1000)
    torch.testing.assert_close(with_checkpoint, plain, atol=1e-6, rtol=1e-4)


# -- memory: bounded by the micro-batch, not the document ------------------------------------------
MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, random, sys
    import torch
    from gpt2kit.config import GPT2Config
    from gpt2kit.models.document_classification import GPT2ForDocumentClassification
    torch.set_num_threads(1)
    n = int(sys.argv[1])
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=64, num_labels=2)
    model = GPT2ForDocumentClassification(cfg).train()
    doc = [random.Random(0).randrange(100) for _ in range(n)]
    def rss_kib(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    before = rss_kib("VmRSS")
    model(documents=[doc], labels=torch.tensor([1]), window_batch_size=16).loss.backward()
    print(json.dumps({"before_kib": before, "peak_kib": rss_kib("VmHWM")}))
    """
)


def peak_rss(tokens: int) -> dict:
    """RSS before, and peak RSS during, one training step (forward + backward) on a document
    of `tokens` tokens, in a fresh process (KiB). The peak (`VmHWM`) is reset just before the
    step; `ru_maxrss` would not do: it inherits the parent's size across fork."""
    # A fixed mmap threshold makes glibc hand freed activation buffers back to the OS at once,
    # so the peak reflects live memory, not what the allocator keeps cached.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tokens)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_training_memory_for_50k_tokens_is_close_to_5k():
    small, large = peak_rss(5_000), peak_rss(50_000)
    growth_small = small["peak_kib"] - small["before_kib"]
    growth_large = large["peak_kib"] - large["before_kib"]
    # Keeping every window's activations would cost several KiB per token here (~1 GB for the
    # 100k window tokens of a 50k document); per-micro-batch checkpointing keeps one pooled
    # vector and the input ids per window. Measured: ~103 MiB (5k) vs ~117 MiB (50k).
    assert growth_large - growth_small < 48 * 1024, (small, large)


# -- shared harness ---------------------------------------------------------------------------------
def docs_batch(config, seed):
    return {"documents": random_docs([40, 5, 17], seed=seed), "labels": torch.tensor([0, 2, 1])}


def padded_docs_batch(config, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 99, (2, 30), generator=g)
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, 12:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([1, 0])}


CASES = [
    ModelCase(
        GPT2ForDocumentClassification,
        {"num_labels": 3, "n_positions": 16},
        docs_batch,
        {"logits": (3, 3)},
        name="mean",
    ),
    ModelCase(
        GPT2ForDocumentClassification,
        {
            "num_labels": 3,
            "n_positions": 16,
            "doc_aggregation": "attention",
            "stride": 3,
            "window_pooling": "mean",
        },
        docs_batch,
        {"logits": (3, 3), "pooled_output": (3, 32)},
        name="attention",
    ),
    ModelCase(
        GPT2ForDocumentClassification,
        {
            "num_labels": 2,
            "n_positions": 16,
            "doc_aggregation": "max",
            "window_size": 8,
            "stride": 0,
        },
        padded_docs_batch,
        {"logits": (2, 2)},
        name="max-padded",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_harness(case, tmp_path):
    check_model_case(case, tmp_path)


# -- it learns --------------------------------------------------------------------------------------
def marker_docs(n: int, seed: int, lo: int, hi: int) -> tuple[list[list[int]], torch.Tensor]:
    """Filler tokens with one marker (1 or 2) anywhere; the marker is the label."""
    rng = random.Random(seed)
    docs, labels = [], []
    for _ in range(n):
        length = rng.randint(lo, hi)
        doc = [rng.randrange(3, 20) for _ in range(length - 1)]
        label = rng.randrange(2)
        doc.insert(rng.randrange(length), 1 + label)
        docs.append(doc)
        labels.append(label)
    return docs, torch.tensor(labels)


def test_learns_a_marker_anywhere_in_documents_20x_the_window():
    # n_positions 16; held-out documents are 320 tokens (20 windows), so only the
    # aggregation over windows can find the marker. Training documents have 8-320 tokens
    # (short ones give a clean early signal), trained end to end through the checkpointed
    # micro-batches.
    torch.manual_seed(0)
    model = GPT2ForDocumentClassification(
        tiny_config(
            num_labels=2,
            n_positions=16,
            stride=0,
            doc_aggregation="max",
            window_batch_size=64,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    )
    train_x, train_y = marker_docs(1600, seed=1, lo=8, hi=320)
    test_x, test_y = marker_docs(200, seed=2, lo=320, hi=320)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(100):
        i = step * 16
        loss = model(documents=train_x[i : i + 16], labels=train_y[i : i + 16]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(documents=test_x).logits.argmax(-1) == test_y).float().mean().item()
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.3f}"
