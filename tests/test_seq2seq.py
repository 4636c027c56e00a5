"""GPT2ForSequenceToSequence and the seq2seq collator: masking, loss, generation, learning."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from gpt2kit.models.seq2seq import GPT2ForSequenceToSequence
from gpt2kit.tasks.seq2seq import Seq2SeqCollator, pad_sequences, trim_generated
from harness import ModelCase, check_model_case, exact_match, tiny_config, train_reverser

SEP, EOS = 2, 1


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models gain nothing from threads; on a busy machine OpenMP threads spin-wait.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_config(**overrides):
    base = dict(vocab_size=16, bos_token_id=0, eos_token_id=EOS, sep_token_id=SEP, n_positions=16)
    return tiny_config(**{**base, **overrides})


def build(seed: int = 0, **overrides) -> GPT2ForSequenceToSequence:
    torch.manual_seed(seed)
    return GPT2ForSequenceToSequence(small_config(**overrides)).eval()


def greedy_reference(model, source: list[int], steps: int) -> list[int]:
    """Greedy decoding the slow, obvious way: the whole sequence again at every step."""
    ids = [*source, model.sep_token_id]
    new: list[int] = []
    for _ in range(steps):
        with torch.no_grad():
            nxt = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
        if nxt == model.eos_token_id:
            break
        new.append(nxt)
    return new


# -- the collator -----------------------------------------------------------------------------------
def test_collator_masks_source_and_separator():
    batch = Seq2SeqCollator(sep_token_id=SEP, eos_token_id=EOS)(
        [([5, 6, 7], [8]), {"source_ids": [9], "target_ids": [10, 11]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, SEP, 8, EOS], [9, SEP, 10, 11, EOS, 0]]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 1, 0]]
    assert batch["labels"].tolist() == [
        [-100, -100, -100, -100, 8, EOS],
        [-100, -100, 10, 11, EOS, -100],
    ]


def test_collator_truncates_sources_and_rejects_oversized_targets():
    collate = Seq2SeqCollator(sep_token_id=SEP, eos_token_id=EOS, max_length=6)
    batch = collate([(list(range(3, 13)), [4, 5])])
    assert batch["input_ids"].tolist() == [[3, 4, SEP, 4, 5, EOS]]  # the source's head is kept
    assert batch["labels"].tolist() == [[-100, -100, -100, 4, 5, EOS]]
    with pytest.raises(ValueError, match="max_length"):
        collate([([3], [4, 5, 6, 7, 8])])
    with pytest.raises(ValueError, match="target_ids"):
        collate([{"source": [1]}])


def test_pad_and_trim_helpers():
    ids, mask = pad_sequences([[1, 2], [3]], pad_value=7, side="left")
    assert ids.tolist() == [[1, 2], [7, 3]] and mask.tolist() == [[1, 1], [0, 1]]
    assert trim_generated(torch.tensor([[4, 1, 5], [6, 7, 8]]), [1, 8]) == [[4], [6, 7]]
    assert trim_generated(torch.tensor([[4, 1]]), None) == [[4, 1]]


# -- the model --------------------------------------------------------------------------------------
def test_loss_covers_target_and_eos_only():
    model = build()
    batch = Seq2SeqCollator(sep_token_id=SEP, eos_token_id=EOS)(
        [([5, 6, 7], [8, 9]), ([10], [11, 12, 13])]
    )
    with torch.no_grad():
        out = model(**batch)
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # Predictions from the separator on: target tokens and EOS, nothing of the source.
    terms = []
    for row, (src_len, tgt) in enumerate([(3, [8, 9, EOS]), (1, [11, 12, 13, EOS])]):
        for j, tok in enumerate(tgt):
            terms.append(F.cross_entropy(logits[row, src_len + j], torch.tensor(tok)))
    torch.testing.assert_close(out.loss, torch.stack(terms).mean())


def test_separator_defaults_to_eos():
    model = GPT2ForSequenceToSequence(tiny_config())
    assert model.sep_token_id == model.eos_token_id == 99


def test_generate_returns_only_the_target_and_matches_a_plain_greedy_loop():
    model = build()
    sources = [[5, 6, 7, 8], [9, 10], [3, 4, 5, 6, 7]]
    got = model.generate_target(sources, max_new_tokens=6)
    assert got == [greedy_reference(model, s, 6) for s in sources]
    assert model.generate_target(sources[0], max_new_tokens=6) == got[0]  # one source -> one list
    ids, mask = pad_sequences(sources, 0)
    assert model.generate_target(ids, attention_mask=mask, max_new_tokens=6) == got


def test_generate_sampling_and_beams():
    model = build()
    sampled = model.generate_target(
        [[5, 6, 7]], max_new_tokens=4, do_sample=True, seed=0, eos_token_id=None
    )
    assert len(sampled) == 1 and len(sampled[0]) == 4 and all(0 <= t < 16 for t in sampled[0])
    beams = model.generate_target([[5, 6, 7], [8, 9]], max_new_tokens=4, num_beams=3)
    assert len(beams) == 2 and all(len(b) <= 4 for b in beams)


def test_loads_a_plain_gpt2_checkpoint_with_nothing_new(tmp_path, hf_twin):
    ref, folder = hf_twin(small_config(), "GPT2LMHeadModel")
    model, report = GPT2ForSequenceToSequence.from_pretrained(folder, output_loading_info=True)
    assert report.new_keys == []
    ids = torch.tensor([[5, 6, 7, SEP, 8]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits, atol=1e-5, rtol=0)


# -- shared harness ---------------------------------------------------------------------------------
def seq2seq_batch(config, seed):
    rng = random.Random(seed)
    pairs = [
        ([rng.randrange(3, 15) for _ in range(n)], [rng.randrange(3, 15) for _ in range(m)])
        for n, m in [(4, 3), (2, 5)]
    ]
    return Seq2SeqCollator(sep_token_id=SEP, eos_token_id=EOS)(pairs)


CASES = [
    ModelCase(
        GPT2ForSequenceToSequence,
        {"vocab_size": 16, "eos_token_id": EOS, "sep_token_id": SEP},
        seq2seq_batch,
        {"logits": (2, 9, 16)},
    )
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_harness(case, tmp_path):
    check_model_case(case, tmp_path)


# -- it learns --------------------------------------------------------------------------------------
def test_learns_to_reverse_held_out_sequences():
    torch.manual_seed(0)
    model = GPT2ForSequenceToSequence(small_config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    collate = Seq2SeqCollator(sep_token_id=SEP, eos_token_id=EOS)
    model, test = train_reverser(model, collate)
    exact = exact_match(model.generate_target([s for s, _ in test], max_new_tokens=7), test)
    assert exact >= 0.95, f"held-out exact match {exact:.3f}"


def test_generate_rejects_dict_output_naming_the_alternative():
    from gpt2kit import GPT2ForConditionalGeneration

    model = build().eval()
    with pytest.raises(ValueError, match="gpt2kit.generation.generate"):
        model.generate_target([[5, 6, 7]], max_new_tokens=3, return_dict_in_generate=True)
    enc_dec = GPT2ForConditionalGeneration(small_config()).eval()
    with pytest.raises(ValueError, match="target ids only"):
        enc_dec.generate_target([[5, 6, 7]], max_new_tokens=3, return_dict_in_generate=True)


def test_generate_is_a_causal_lms_and_refuses_id_lists():
    """`generate` continues `input_ids` tensors like `GPT2LMHeadModel.generate` (prompt +
    new ids); a Python list, which used to mean "sources", is refused naming generate_target."""
    from gpt2kit import GPT2LMHeadModel

    model = build()
    lm = GPT2LMHeadModel(small_config()).eval()
    lm.load_state_dict(model.state_dict())
    prompt = torch.tensor([[5, 6, 7, SEP]])
    out = model.generate(prompt, max_new_tokens=4, eos_token_id=None)
    assert out.shape == (1, 8) and out[:, :4].tolist() == prompt.tolist()
    assert out.tolist() == lm.generate(prompt, max_new_tokens=4, eos_token_id=None).tolist()
    assert out[0, 4:].tolist() == model.generate_target(
        [5, 6, 7], max_new_tokens=4, eos_token_id=None
    )
    with pytest.raises(TypeError, match="generate_target"):
        model.generate([5, 6, 7], max_new_tokens=3)
