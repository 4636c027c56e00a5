"""GPT2ForTextClassification and packing: packed == alone, fallbacks, errors, HF checkpoints, learning."""

from __future__ import annotations

import random

import pytest
import torch

from gpt2kit.models.text_classification import GPT2ForTextClassification
from gpt2kit.tasks.packing import assign_rows, pack_texts, pool_spans
from harness import ModelCase, check_model_case, tiny_config


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from threads, and on a busy machine OpenMP threads spin-wait
    # for each other (measured: 15x the CPU time of one thread).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def random_texts(n: int, lo: int, hi: int, seed: int = 0, vocab: int = 99) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


# -- packing ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["first_fit_decreasing", "sequential"])
def test_assign_rows_places_every_text_once_within_the_row_length(strategy):
    lengths = [len(t) for t in random_texts(200, 1, 30, seed=1)]
    rows = assign_rows(lengths, 64, strategy)
    assert sorted(i for row in rows for i in row) == list(range(200))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    if strategy == "first_fit_decreasing":  # rows end up nearly full
        assert len(rows) <= sum(lengths) / 64 * 1.05 + 1


def test_pack_texts_layout_mask_and_positions():
    texts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    batch = pack_texts(texts, max_length=5, pad_token_id=0)
    for i, (row, start, end) in enumerate(batch.spans.tolist()):
        assert batch.input_ids[row, start:end].tolist() == texts[i]
        assert batch.position_ids[row, start:end].tolist() == list(range(len(texts[i])))
        block = batch.attention_mask[row, 0, start:end, start:end]
        assert torch.equal(block, torch.ones_like(block).tril())
        # No token of this text sees any token outside it.
        outside = batch.attention_mask[row, 0, start:end].clone()
        outside[:, start:end] = False
        assert not outside.any()


def test_pack_texts_errors():
    with pytest.raises(ValueError, match="empty"):
        pack_texts([[1], []], max_length=8)
    with pytest.raises(ValueError, match="row length"):
        pack_texts([[1] * 9], max_length=8)
    with pytest.raises(ValueError, match="no texts"):
        pack_texts([], max_length=8)
    with pytest.raises(ValueError, match="strategy"):
        assign_rows([1], 8, "best")


def test_pool_spans_mean_equals_per_text_mean():
    hidden = torch.randn(2, 6, 4)
    spans = torch.tensor([[0, 0, 2], [1, 0, 6], [0, 2, 5]])
    got = pool_spans(hidden, spans, "mean")
    want = torch.stack([hidden[r, s:e].mean(0) for r, s, e in spans.tolist()])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(pool_spans(hidden, spans, "last"), hidden[[0, 1, 0], [1, 5, 4]])


# -- the model --------------------------------------------------------------------------------------
def build(seed: int = 0, **overrides) -> GPT2ForTextClassification:
    torch.manual_seed(seed)
    cfg = tiny_config(**{"num_labels": 3, "max_text_length": 24, **overrides})
    return GPT2ForTextClassification(cfg).eval()


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_packed_logits_equal_each_text_alone(pooling):
    model = build(text_pooling=pooling)
    # Short texts are packed; 30- and 64-token texts exceed max_text_length (24) and take the
    # padded fallback; the output order must still be the input order.
    texts = random_texts(40, 1, 24, seed=2)
    texts.insert(7, random_texts(1, 30, 30, seed=3)[0])
    texts.insert(20, random_texts(1, 64, 64, seed=4)[0])
    with torch.no_grad():
        packed = model(texts=texts).logits
        alone = torch.cat([model(torch.tensor([t])).logits for t in texts])
    assert packed.shape == (42, 3)
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=0)
    assert len(model.pack(texts[:7] + texts[8:20]).input_ids) < 19  # really packed


def test_prepacked_and_padded_inputs_agree_with_texts():
    model = build()
    texts = random_texts(10, 2, 20, seed=5)
    batch = model.pack(texts)
    padded = torch.zeros(10, 20, dtype=torch.long)
    mask = torch.zeros_like(padded)
    for i, t in enumerate(texts):  # left padding: positions come from the mask
        padded[i, 20 - len(t) :] = torch.tensor(t)
        mask[i, 20 - len(t) :] = 1
    with torch.no_grad():
        a = model(texts=texts).logits
        b = model(
            batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            text_spans=batch.spans,
        ).logits
        c = model(padded, attention_mask=mask).logits
        d = model.classify(texts, batch_tokens=30)  # several chunks
    for other in (b, c, d):
        torch.testing.assert_close(a, other, atol=1e-5, rtol=0)


def test_bad_input_errors():
    model = build()
    with pytest.raises(ValueError, match="n_positions"):
        model(texts=[[1] * 65])
    with pytest.raises(ValueError, match="empty"):
        model(texts=[[1, 2], []])
    batch = model.pack([[1, 2, 3]])
    with pytest.raises(ValueError, match="pack_texts"):
        model(batch.input_ids, text_spans=batch.spans)
    with pytest.raises(ValueError, match="text_pooling"):
        build(text_pooling="max")
    with pytest.raises(ValueError, match="max_text_length"):
        build(max_text_length=100)


def test_labels_and_problem_types():
    texts = random_texts(6, 3, 10, seed=6)
    model = build()
    out = model(texts=texts, labels=torch.tensor([0, 1, 2, 0, 1, 2]))
    assert torch.isfinite(out.loss) and out.pooled_output.shape == (6, 32)
    reg = GPT2ForTextClassification(tiny_config(num_labels=1, max_text_length=24))
    assert reg(texts=texts, labels=torch.randn(6)).loss.dim() == 0
    assert reg.config.problem_type == "regression"
    multi = GPT2ForTextClassification(tiny_config(num_labels=3, max_text_length=24))
    assert multi(texts=texts, labels=torch.ones(6, 3)).loss.dim() == 0
    assert multi.config.problem_type == "multi_label_classification"


def test_options_survive_save_load(tmp_path):
    model = build(text_pooling="mean")
    model.save_pretrained(tmp_path / "m")
    loaded = GPT2ForTextClassification.from_pretrained(tmp_path / "m")
    assert loaded.text_pooling == "mean" and loaded.max_text_length == 24
    texts = random_texts(5, 2, 12, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(
            model(texts=texts).logits, loaded(texts=texts).logits, atol=0, rtol=0
        )


def test_loads_transformers_sequence_classification_checkpoint(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64, num_labels=3, pad_token_id=0
    )
    torch.manual_seed(0)
    ref = transformers.GPT2ForSequenceClassification(cfg).eval()
    ref.save_pretrained(tmp_path / "hf")
    model = GPT2ForTextClassification.from_pretrained(tmp_path / "hf", max_text_length=24)
    texts = random_texts(8, 2, 20, seed=8, vocab=99)
    texts = [[t + 1 for t in text] for text in texts]  # no pad id inside texts (HF pools by pad id)
    with torch.no_grad():
        want = torch.cat([ref(torch.tensor([t])).logits for t in texts])
        got = model.classify(texts)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


# -- shared harness ---------------------------------------------------------------------------------
def texts_batch(config, seed):
    texts = random_texts(5, 1, 12, seed=seed)
    return {"texts": texts, "labels": torch.tensor([0, 1, 2, 1, 0])}


def packed_batch(config, seed):
    batch = pack_texts(random_texts(5, 1, 12, seed=seed), 24)
    return {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "position_ids": batch.position_ids,
        "text_spans": batch.spans,
        "labels": torch.tensor([0, 1, 2, 1, 0]),
    }


def padded_batch(config, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 99, (2, 8), generator=g)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([2, 0])}


CASES = [
    ModelCase(
        GPT2ForTextClassification,
        {"num_labels": 3, "max_text_length": 24},
        texts_batch,
        {"logits": (5, 3)},
        name="texts",
    ),
    ModelCase(
        GPT2ForTextClassification,
        {"num_labels": 3, "text_pooling": "mean"},
        packed_batch,
        {"logits": (5, 3), "pooled_output": (5, 32)},
        name="packed-mean",
    ),
    ModelCase(
        GPT2ForTextClassification,
        {"num_labels": 3},
        padded_batch,
        {"logits": (2, 3)},
        name="padded",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_harness(case, tmp_path):
    check_model_case(case, tmp_path)


# -- it learns --------------------------------------------------------------------------------------
def marker_texts(n: int, seed: int) -> tuple[list[list[int]], torch.Tensor]:
    """Random texts of 4-20 tokens; one marker token (1 or 2) somewhere decides the label."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        text = [rng.randrange(3, 99) for _ in range(rng.randint(3, 19))]
        label = rng.randrange(2)
        text.insert(rng.randrange(len(text) + 1), 1 + label)
        texts.append(text)
        labels.append(label)
    return texts, torch.tensor(labels)


def test_learns_marker_label_on_packed_batches():
    torch.manual_seed(0)
    model = GPT2ForTextClassification(
        tiny_config(num_labels=2, max_text_length=24, n_positions=128)
    )
    train_x, train_y = marker_texts(2048, seed=10)
    test_x, test_y = marker_texts(400, seed=11)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(150):
        i = (step * 64) % 2048
        loss = model(texts=train_x[i : i + 64], labels=train_y[i : i + 64]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    accuracy = (model.classify(test_x).argmax(-1) == test_y).float().mean().item()
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.3f}"
