"""Each head learns a small synthetic task that it can only solve if the head (its pooling,
its positions, its loss) is wired right: a tiny random-init model, a plain AdamW loop on
CPU for a few seconds, then a high score on held-out examples."""

from __future__ import annotations

import pytest
import torch

from gpt2kit.models.double_heads import GPT2DoubleHeadsModel
from gpt2kit.models.multiple_choice import GPT2ForMultipleChoice
from gpt2kit.models.question_answering import GPT2ForQuestionAnswering
from gpt2kit.models.sequence_classification import GPT2ForSequenceClassification
from gpt2kit.models.token_classification import GPT2ForTokenClassification
from harness import tiny_config

V = 40
SEP = 1  # separator / pad id in these toy vocabularies


@pytest.fixture(autouse=True)
def _seeded_init():
    """Each model's random init from one seed, whatever ran before in the process (a QA
    run failed in CI at 0.58 exact match from an init left by earlier tests' draws)."""
    torch.manual_seed(0)


def config(**kw):
    # No dropout: a few hundred steps must be enough.
    zero = dict(
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        classifier_dropout=0.0,
    )
    return tiny_config(vocab_size=V, **{**zero, **kw})


def train(model, make_batch, score, max_steps, batch_size=32, lr=3e-3):
    """AdamW on batches of `make_batch(n, seed)` until `score(model, batch)` on a validation
    batch reaches 0.98 (checked every 25 steps) or `max_steps`; returns the eval model.
    Examples are generated once up front: Python-side generation would cost more than the
    tiny model's steps."""
    torch.manual_seed(0)
    data = make_batch(batch_size * 50, 1)
    val = make_batch(200, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for step in range(1, max_steps + 1):
        idx = torch.randint(0, batch_size * 50, (batch_size,), generator=g)
        model.train()
        loss = model(**{k: v[idx] for k, v in data.items()}).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                if score(model, val) >= 0.98:
                    break
    return model.eval()


def held_out(model, make_batch, score):
    with torch.no_grad():
        return score(model, make_batch(300, 10_000))


# -- sequence classification: does token X occur? (the last real token must see everything)
X = 7


def occurs_batch(n, seed, with_labels=True):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 12, (n,), generator=g)
    ids = torch.randint(10, V, (n, 12), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    mask = (torch.arange(12)[None] < lengths[:, None]).long()
    for i in range(n):
        if labels[i]:
            ids[i, torch.randint(0, int(lengths[i]), (1,), generator=g)] = X
    ids = ids.masked_fill(mask == 0, SEP)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def accuracy(model, batch):
    pred = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
    return float((pred == batch["labels"]).float().mean())


def test_sequence_classification_learns_occurrence():
    model = train(GPT2ForSequenceClassification(config(num_labels=2)), occurs_batch, accuracy, 400)
    assert held_out(model, occurs_batch, accuracy) >= 0.95


# -- token classification: tag each token by the set it belongs to (3 classes)
def tag_batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, V, (n, 10), generator=g)
    labels = (ids >= 15).long() + (ids >= 30).long()
    labels[:, -2:] = -100  # some ignored positions
    return {"input_ids": ids, "labels": labels}


def tag_accuracy(model, batch):
    pred = model(batch["input_ids"]).logits.argmax(-1)
    keep = batch["labels"] != -100
    return float((pred[keep] == batch["labels"][keep]).float().mean())


def test_token_classification_learns_tag_sets():
    model = train(GPT2ForTokenClassification(config(num_labels=3)), tag_batch, tag_accuracy, 300)
    assert held_out(model, tag_batch, tag_accuracy) >= 0.95


# -- QA: the question names a marker; the answer is the 2 tokens after it in the context
MARKERS = (2, 3, 4)


def qa_batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    T_ctx = 14
    ids = torch.randint(10, V, (n, 2 + T_ctx), generator=g)
    starts, ends = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    for i in range(n):
        pos = torch.randperm(T_ctx - 2, generator=g)[:3].sort().values
        while (pos[1:] - pos[:-1]).min() < 3:  # markers apart, answers do not overlap
            pos = torch.randperm(T_ctx - 2, generator=g)[:3].sort().values
        order = torch.randperm(3, generator=g)
        for p, m in zip(pos.tolist(), order.tolist()):
            ids[i, 2 + p] = MARKERS[m]
        asked = int(torch.randint(0, 3, (1,), generator=g))
        ids[i, 0], ids[i, 1] = MARKERS[asked], SEP  # question, then SEP
        p = int(pos[order.tolist().index(asked)])
        starts[i], ends[i] = 2 + p + 1, 2 + p + 2
    return {"input_ids": ids, "start_positions": starts, "end_positions": ends}


def exact_match(model, batch):
    out = model(batch["input_ids"])
    exact = (out.start_logits.argmax(-1) == batch["start_positions"]) & (
        out.end_logits.argmax(-1) == batch["end_positions"]
    )
    return float(exact.float().mean())


@pytest.mark.slow  # minutes on a loaded 2-core machine
def test_question_answering_learns_marked_span():
    # (up to 1200 steps: at 600 the single-thread run, as in the full suite where other test
    # modules set one thread, reached 0.58 on one CPU; training stops at 0.98 validation)
    model = train(GPT2ForQuestionAnswering(config()), qa_batch, exact_match, 1200)
    assert held_out(model, qa_batch, exact_match) >= 0.95


# -- multiple choice: the right choice repeats the context's key (its first token).
# Keys and choices come from the same 4 tokens, so only comparing the choice with the
# key tells them apart; odd choices carry a filler token, so rows have different lengths
# and pooling must find each row's last real token.
C, KEYS = 4, torch.arange(10, 14)


def choice_batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    key = KEYS[torch.randint(0, 4, (n,), generator=g)]
    choices = torch.stack([KEYS[torch.randperm(4, generator=g)] for _ in range(n)])  # (n, C)
    labels = (choices == key[:, None]).long().argmax(-1)
    T = 7
    ids = torch.full((n, C, T), SEP)
    mask = torch.zeros(n, C, T, dtype=torch.long)
    ids[:, :, 0] = key[:, None]
    ids[:, :, 1:4] = torch.randint(20, V, (n, 1, 3), generator=g)  # shared filler context
    for c in range(C):
        L = 6 + c % 2
        ids[:, c, L - 2] = 8 if L == 7 else SEP  # SEP (or a filler) before the choice
        ids[:, c, L - 1] = choices[:, c]
        mask[:, c, :L] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def choice_accuracy(model, batch, field="logits"):
    out = model(batch["input_ids"], attention_mask=batch["attention_mask"])
    return float(
        (out[field].argmax(-1) == batch.get("labels", batch.get("mc_labels"))).float().mean()
    )


def test_multiple_choice_learns_repeated_key():
    model = train(
        GPT2ForMultipleChoice(config()), choice_batch, choice_accuracy, 500, batch_size=16
    )
    assert held_out(model, choice_batch, choice_accuracy) >= 0.95


class McLoss(torch.nn.Module):
    """Double heads trained on its mc_loss (its `loss` is the LM loss)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kw):
        out = self.model(*args, **kw)
        out.loss = out.mc_loss
        return out


def test_double_heads_mc_part_learns_repeated_key():
    def batch_fn(n, seed):
        b = choice_batch(n, seed)
        b["mc_labels"] = b.pop("labels")
        return b

    def score(model, batch):
        return choice_accuracy(model, batch, "mc_logits")

    model = GPT2DoubleHeadsModel(config())
    train(McLoss(model), batch_fn, score, 500, batch_size=16)
    assert held_out(model, batch_fn, score) >= 0.95
