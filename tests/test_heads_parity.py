"""Task heads that exist in `transformers`: same numbers (1e-5, fp32), same checkpoints both
ways; plus the shared harness for every head in this family (one line each) and loading one
head's checkpoint into another."""

from __future__ import annotations

import logging

import pytest
import torch
import transformers

from gpt2kit.models.double_heads import GPT2DoubleHeadsModel
from gpt2kit.models.lm import GPT2LMHeadModel
from gpt2kit.models.multiple_choice import GPT2ForMultipleChoice
from gpt2kit.models.question_answering import GPT2ForQuestionAnswering
from gpt2kit.models.sequence_classification import GPT2ForSequenceClassification
from gpt2kit.models.token_classification import GPT2ForTokenClassification
from harness import SEQ, ModelCase, check_model_case, lm_batch, tiny_config

TOL = dict(atol=1e-5, rtol=1e-5)
B, C, V, PAD = 2, 3, 100, 99  # PAD = EOS, as GPT-2 fine-tuning usually sets it


def close(a, b):
    torch.testing.assert_close(a, b, **TOL)


# -- batches for the harness -----------------------------------------------------------------
def choice_batch(config, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V - 1, (B, C, SEQ), generator=g)
    mask = torch.ones(B, C, SEQ, dtype=torch.long)
    mask[1, :, -2:] = 0  # right-padded choices
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 2])}


def double_heads_batch(config, seed):
    batch = choice_batch(config, seed)
    batch["mc_labels"] = batch.pop("labels")
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return batch


def seq_cls_batch(config, seed):
    batch = lm_batch(config, seed)
    batch["labels"] = torch.tensor([1, 2])
    return batch


def token_cls_batch(config, seed):
    batch = lm_batch(config, seed)
    batch["labels"] = (batch["input_ids"] % 5).masked_fill(batch["attention_mask"] == 0, -100)
    return batch


def qa_batch(config, seed):
    batch = lm_batch(config, seed)
    del batch["labels"]
    return {**batch, "start_positions": torch.tensor([2, 1]), "end_positions": torch.tensor([4, 3])}


CASES = [
    # `loss` is the LM loss (as in `transformers`); mc_loss trains the summary (test_heads_learn)
    ModelCase(
        GPT2DoubleHeadsModel,
        {},
        double_heads_batch,
        {"logits": (B, C, SEQ, V), "mc_logits": (B, C), "mc_loss": ()},
        no_grad=("multiple_choice_head",),
    ),
    ModelCase(GPT2ForSequenceClassification, {"num_labels": 3}, seq_cls_batch, {"logits": (B, 3)}),
    ModelCase(
        GPT2ForTokenClassification, {"num_labels": 5}, token_cls_batch, {"logits": (B, SEQ, 5)}
    ),
    ModelCase(
        GPT2ForQuestionAnswering, {}, qa_batch, {"start_logits": (B, SEQ), "end_logits": (B, SEQ)}
    ),
    ModelCase(GPT2ForMultipleChoice, {}, choice_batch, {"logits": (B, C), "probabilities": (B, C)}),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_harness(case, tmp_path):
    check_model_case(case, tmp_path)


# -- parity ----------------------------------------------------------------------------------
def ids(*shape, seed=1):
    return torch.randint(0, V - 1, shape, generator=torch.Generator().manual_seed(seed))


def test_double_heads_parity(hf_twin):
    hf, folder = hf_twin(tiny_config(), "GPT2DoubleHeadsModel")
    ours = GPT2DoubleHeadsModel.from_pretrained(folder)
    x = ids(B, C, SEQ)
    kw = dict(
        labels=x, mc_labels=torch.tensor([2, 0]), mc_token_ids=torch.tensor([[7, 5, 3], [2, 7, 6]])
    )
    with torch.no_grad():
        a, b = ours(x, **kw), hf(input_ids=x, **kw)
        for field in ("loss", "mc_loss", "logits", "mc_logits"):
            close(a[field], b[field])
        # Default pooling: the last position when nothing is padded, as in `transformers`.
        close(ours(x).mc_logits, hf(input_ids=x).mc_logits)


@pytest.mark.parametrize(
    "summary",
    [
        {"summary_type": "last", "summary_activation": "tanh"},
        {"summary_type": "mean", "summary_proj_to_labels": False, "summary_activation": "relu"},
        {"summary_type": "first", "summary_use_proj": False},
    ],
    ids=str,
)
def test_double_heads_summary_types_parity(summary, hf_twin):
    """`transformers`' `last`/`first`/`mean` index dim 1, which on `[B, C, T]` input is the
    choice axis, not the tokens; so they are compared on `[B, T]` input, where both pool
    tokens. Ours pools tokens for any number of leading dims."""
    hf, folder = hf_twin(tiny_config(**summary), "GPT2DoubleHeadsModel")
    ours = GPT2DoubleHeadsModel.from_pretrained(folder)
    x = ids(B, SEQ)
    with torch.no_grad():
        a, b = ours(x, labels=x), hf(input_ids=x, labels=x)
    for field in ("loss", "logits", "mc_logits"):
        close(a[field], b[field])


def test_double_heads_masked_default_pools_last_real_token():
    model = GPT2DoubleHeadsModel(tiny_config()).eval()
    x = ids(B, C, SEQ)
    mask = torch.ones_like(x)
    mask[:, 1, 5:] = 0
    with torch.no_grad():
        padded = model(x, attention_mask=mask).mc_logits
        explicit = model(
            x, attention_mask=mask, mc_token_ids=torch.tensor([[7, 4, 7]] * B)
        ).mc_logits
        alone = model(x[:, 1:2, :5]).mc_logits  # choice 1 with its pads cut off
    close(padded, explicit)
    close(padded[:, 1:2], alone)


def test_double_heads_lm_use_and_logits_to_keep():
    model = GPT2DoubleHeadsModel(tiny_config()).eval()
    lm = GPT2LMHeadModel(tiny_config())
    lm.load_state_dict({k: v for k, v in model.state_dict().items() if "multiple_choice" not in k})
    x = ids(B, SEQ)
    with torch.no_grad():
        out = model(x, logits_to_keep=1)
        close(out.logits, lm.eval()(x).logits[:, -1:])
        assert out.mc_logits.shape == (B,)
        # cached decoding: no whole row to score, so no mc_logits
        step = model(x, attention_mask=torch.ones(B, SEQ), use_cache=True)
        nxt = model(
            x[:, :1], past_key_values=step.past_key_values, attention_mask=torch.ones(B, SEQ + 1)
        )
    assert nxt.mc_logits is None and nxt.logits.shape == (B, 1, V)
    with pytest.raises(ValueError, match="mc_labels"):
        model(x, mc_labels=torch.tensor([0, 1]))


def _right_padded(seed=2):
    x = ids(B, SEQ, seed=seed)
    mask = torch.ones_like(x)
    mask[1, -3:] = 0
    return x.masked_fill(mask == 0, PAD), mask


@pytest.mark.parametrize(
    "problem,num_labels,labels",
    [
        (None, 3, torch.tensor([2, 0])),  # inferred: single-label
        ("single_label_classification", 3, torch.tensor([1, 1])),
        ("multi_label_classification", 3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])),
        ("regression", 1, torch.tensor([0.5, -1.5])),
        ("regression", 2, torch.tensor([[0.5, 1.0], [-1.5, 0.0]])),
    ],
)
def test_sequence_classification_parity(problem, num_labels, labels, hf_twin):
    cfg = tiny_config(num_labels=num_labels, pad_token_id=PAD, problem_type=problem)
    hf, folder = hf_twin(cfg, "GPT2ForSequenceClassification")
    ours = GPT2ForSequenceClassification.from_pretrained(folder)
    x, mask = _right_padded()
    with torch.no_grad():
        for kw in (dict(attention_mask=mask), {}):  # padded with mask; by pad id without
            a, b = ours(x, labels=labels, **kw), hf(input_ids=x, labels=labels, **kw)
            close(a.logits, b.logits)
            close(a.loss, b.loss)
        unpadded = ids(B, SEQ, seed=3)
        close(ours(unpadded).logits, hf(input_ids=unpadded).logits)
    assert ours.config.problem_type == hf.config.problem_type


def test_sequence_classification_left_padding_where_transformers_is_wrong(hf_twin):
    """Texts that end with EOS (pad = EOS), left-padded for batched inference.

    `transformers` (5.x) pools at the rightmost token whose id is not the pad id, so a text
    that ends with its EOS is read one token early, and it numbers positions from the first
    slot, so a left-padded row is shifted: both make its logits differ from the same text
    unpadded. We pool at the last real token of the mask and derive positions from the
    mask: a left-padded row gives the logits of the text alone.
    """
    hf, folder = hf_twin(
        tiny_config(num_labels=3, pad_token_id=PAD), "GPT2ForSequenceClassification"
    )
    ours = GPT2ForSequenceClassification.from_pretrained(folder)
    text = torch.cat([ids(1, 5, seed=4), torch.tensor([[PAD]])], 1)  # 5 tokens + EOS
    longer = torch.cat([ids(1, SEQ - 1, seed=5), torch.tensor([[PAD]])], 1)
    x = torch.cat([torch.cat([torch.full((1, SEQ - 6), PAD), text], 1), longer])  # left pad
    mask = (torch.arange(SEQ) >= SEQ - 6).long()[None].repeat(2, 1)
    mask[1] = 1
    with torch.no_grad():
        # The right answer, from `transformers`' own modules: score at the final EOS.
        right = hf.score(hf.transformer(input_ids=text).last_hidden_state[:, -1])
        close(ours(text, attention_mask=torch.ones_like(text)).logits, right)
        close(ours(x, attention_mask=mask).logits[:1], right)
        assert (hf(input_ids=text).logits - right).abs().max() > 1e-3  # read one token early
        assert (hf(input_ids=x, attention_mask=mask).logits[:1] - right).abs().max() > 1e-3
        # Without a mask we follow `transformers`' pad-id rule, for parity.
        close(ours(text).logits, hf(input_ids=text).logits)


def test_sequence_classification_needs_mask_or_pad_id():
    model = GPT2ForSequenceClassification(tiny_config(num_labels=2)).eval()
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids(B, SEQ))
    assert model(ids(1, SEQ)).logits.shape == (1, 2)


def test_token_classification_parity(hf_twin):
    hf, folder = hf_twin(tiny_config(num_labels=5), "GPT2ForTokenClassification")
    ours = GPT2ForTokenClassification.from_pretrained(folder)
    x, mask = _right_padded()
    labels = (x % 5).masked_fill(mask == 0, -100)
    with torch.no_grad():
        a, b = (
            ours(x, attention_mask=mask, labels=labels),
            hf(input_ids=x, attention_mask=mask, labels=labels),
        )
    close(a.logits[mask.bool()], b.logits[mask.bool()])
    close(a.loss, b.loss)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\)"):
        ours(x, labels=torch.full_like(x, 7))


def test_token_classification_dropout_rule():
    assert GPT2ForTokenClassification(tiny_config()).dropout.p == 0.1
    assert GPT2ForTokenClassification(tiny_config(classifier_dropout=0.3)).dropout.p == 0.3
    assert GPT2ForTokenClassification(tiny_config(hidden_dropout=0.2)).dropout.p == 0.2


def test_question_answering_parity(hf_twin):
    hf, folder = hf_twin(tiny_config(), "GPT2ForQuestionAnswering")
    ours = GPT2ForQuestionAnswering.from_pretrained(folder)
    x, mask = _right_padded()
    with torch.no_grad():
        a, b = ours(x, attention_mask=mask), hf(input_ids=x, attention_mask=mask)
    # pad slots are unused (and `transformers` numbers their positions differently)
    close(a.start_logits[mask.bool()], b.start_logits[mask.bool()])
    close(a.end_logits[mask.bool()], b.end_logits[mask.bool()])
    # row 1's answer lies beyond the input: clamped to T and ignored by both
    x = ids(B, SEQ)
    for start, end in ([3, 1], [5, 2]), ([3, SEQ + 4], [5, SEQ + 9]):
        kw = dict(start_positions=torch.tensor(start), end_positions=torch.tensor(end))
        with torch.no_grad():
            a, b = ours(x, **kw), hf(input_ids=x, **kw)
        close(a.start_logits, b.start_logits)
        close(a.end_logits, b.end_logits)
        close(a.loss, b.loss)


# -- checkpoints both ways ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls,kw,overrides",
    [
        (GPT2DoubleHeadsModel, {"mc_token_ids": torch.tensor([[7, 3, 1], [0, 7, 6]])}, {}),
        (GPT2ForSequenceClassification, {}, {"num_labels": 4, "pad_token_id": PAD}),
        (GPT2ForTokenClassification, {}, {"num_labels": 4}),
        (GPT2ForQuestionAnswering, {}, {}),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_our_save_loads_in_transformers(cls, kw, overrides, tmp_path):
    ours = cls(tiny_config(**overrides)).eval()
    ours.save_pretrained(tmp_path / "ours")
    hf = getattr(transformers, cls.__name__).from_pretrained(tmp_path / "ours").eval()
    x = ids(B, C, SEQ) if cls is GPT2DoubleHeadsModel else ids(B, SEQ)
    with torch.no_grad():
        a, b = ours(x, **kw), hf(input_ids=x, **kw)
    for field in ("logits", "mc_logits", "start_logits", "end_logits"):
        if getattr(b, field, None) is not None:
            close(a[field], b[field])
    assert hf.config.num_labels == ours.config.num_labels


HEAD_KEYS = {
    GPT2DoubleHeadsModel: [
        "multiple_choice_head.summary.weight",
        "multiple_choice_head.summary.bias",
    ],
    GPT2ForSequenceClassification: ["score.weight"],
    GPT2ForTokenClassification: ["classifier.weight", "classifier.bias"],
    GPT2ForQuestionAnswering: ["qa_outputs.weight", "qa_outputs.bias"],
    GPT2ForMultipleChoice: ["choice_head.weight", "choice_head.bias"],
}


@pytest.mark.parametrize("cls", list(HEAD_KEYS), ids=lambda c: c.__name__)
def test_other_heads_checkpoint_keeps_backbone_and_names_new_head(cls, tmp_path, caplog):
    donor = (
        GPT2ForQuestionAnswering
        if cls is not GPT2ForQuestionAnswering
        else GPT2ForTokenClassification
    )
    src = donor(tiny_config())
    src.save_pretrained(tmp_path / "donor")
    with caplog.at_level(logging.WARNING, logger="gpt2kit"):
        model, report = cls.from_pretrained(tmp_path / "donor", output_loading_info=True)
    assert sorted(report.new_keys) == sorted(HEAD_KEYS[cls])
    assert sorted(report.dropped_keys) == sorted(HEAD_KEYS[donor])
    lines = [r.getMessage() for r in caplog.records if "newly initialized" in r.getMessage()]
    assert len(lines) == 1 and all(k in lines[0] for k in HEAD_KEYS[cls])
    torch.testing.assert_close(
        model.transformer.state_dict(), src.transformer.state_dict(), atol=0, rtol=0
    )
