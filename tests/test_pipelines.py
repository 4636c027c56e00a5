"""Every pipeline on a tiny saved checkpoint of its variant; errors; batching; aggregation rules.

Models are tiny (1 layer, width 16) but use the real GPT-2 vocabulary (50257) so the
shipped tokenizer works unchanged; nothing is downloaded.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gpt2kit.config import GPT2Config
from gpt2kit.models.auto import model_class
from gpt2kit.pipelines import PIPELINES, WrongModelError, aggregate_entities, pipeline
from gpt2kit.pipelines.text_classification import scores_to_labels

NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def _config(**overrides) -> GPT2Config:
    base = dict(
        n_layer=1, n_embd=16, n_head=2, n_positions=64, bos_token_id=50256, eos_token_id=50256
    )
    return GPT2Config(**{**base, **overrides})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """`ckpt(class_name, **config)` -> folder of a seeded tiny model of that class (cached)."""
    root = tmp_path_factory.mktemp("pipelines")
    made: dict[str, Path] = {}

    def make(name: str, **overrides) -> Path:
        key = name + repr(sorted(overrides.items()))
        if key not in made:
            torch.manual_seed(0)
            folder = root / f"{name}-{len(made)}"
            model_class(name)(_config(**overrides)).save_pretrained(folder)
            made[key] = folder
        return made[key]

    return make


def test_every_task_is_registered():
    assert set(PIPELINES) >= {
        "text-generation",
        "summarization",
        "text2text",
        "text-classification",
        "document-classification",
        "token-classification",
        "question-answering",
        "multiple-choice",
        "zero-shot-classification",
        "zero-shot-choice",
        "feature-extraction",
    }
    with pytest.raises(ValueError, match="unknown task"):
        pipeline("translation-to-klingon")


def test_text_generation_batches_streams_and_stops(ckpt):
    gen = pipeline("text-generation", model=ckpt("GPT2LMHeadModel"), max_new_tokens=5)
    one = gen("Hello", do_sample=False)
    assert len(one) == 1 and one[0]["generated_text"].startswith("Hello")
    # A list gives one result list per prompt, equal to the prompt run alone (left padding).
    many = gen(["Hello", "A much longer prompt here"], do_sample=False)
    assert many[0] == one and len(many) == 2
    new_only = gen("Hello", do_sample=False, return_full_text=False)[0]["generated_text"]
    assert one[0]["generated_text"] == "Hello" + new_only
    # The stream's pieces join to the same continuation as the batch call.
    pieces = list(gen("Hello", do_sample=False, stream=True))
    assert "".join(pieces) == new_only
    # Seeded sampling is reproducible.
    a = gen("Hi", do_sample=True, seed=3, max_new_tokens=8)
    assert a == gen("Hi", do_sample=True, seed=3, max_new_tokens=8)
    # A stop string ends the text right after itself.
    text = new_only
    if len(text) > 2:
        stop = text[1:3]
        cut = gen("Hello", do_sample=False, return_full_text=False, stop=stop)[0]["generated_text"]
        assert cut.endswith(stop) and len(cut) <= len(text)


def test_iterator_input_is_lazy(ckpt):
    pipe = pipeline("feature-extraction", model=ckpt("GPT2LMHeadModel"), batch_size=2)
    pulled = []

    def source():
        for i in range(5):
            pulled.append(i)
            yield f"text {i}"

    results = pipe(source())
    assert pulled == []  # nothing read before the first result is asked for
    first = next(results)
    assert len(first) == 16 and pulled == [0, 1]  # one batch of two
    assert len(list(results)) == 4 and pulled == [0, 1, 2, 3, 4]


def test_feature_extraction_on_any_variant(ckpt):
    folder = ckpt("GPT2ForTokenClassification", id2label=NER_LABELS)
    embed = pipeline("feature-extraction", model=folder)
    mean = embed("one two three", return_tensors=True)
    tokens = embed("one two three", pooling="none", return_tensors=True)
    last = embed("one two three", pooling="last", return_tensors=True)
    assert tokens.shape == (3, 16)
    assert torch.allclose(mean, tokens.mean(0), atol=1e-6) and torch.allclose(last, tokens[-1])
    # Padding in a batch changes nothing.
    batch = embed(["one two three", "x"], return_tensors=True)
    assert torch.allclose(batch[0], mean, atol=1e-5)


def test_seq2seq_and_conditional_generation(ckpt):
    for name in ("GPT2ForSequenceToSequence", "GPT2ForConditionalGeneration"):
        pipe = pipeline("text2text", model=ckpt(name))
        out = pipe(["translate this", "and this"], max_new_tokens=4, do_sample=False)
        assert len(out) == 2 and all(isinstance(o["generated_text"], str) for o in out)
    summary = pipeline("summarization", model=ckpt("GPT2ForSequenceToSequence"))(
        "long text", max_new_tokens=3
    )
    assert set(summary) == {"summary_text"}


@pytest.mark.parametrize("name", ["GPT2ForSequenceClassification", "GPT2ForTextClassification"])
def test_text_classification(ckpt, name):
    folder = ckpt(name, id2label={0: "neg", 1: "pos", 2: "neutral"})
    classify = pipeline("text-classification", model=folder)
    best = classify("What a lovely day")
    ranked = classify("What a lovely day", top_k=None)
    assert best["label"] == ranked[0]["label"] and best["score"] == pytest.approx(
        ranked[0]["score"], abs=1e-6
    )
    assert sum(r["score"] for r in ranked) == pytest.approx(1.0, abs=1e-5)
    assert [r["label"] for r in ranked] == sorted(
        [r["label"] for r in ranked],
        key=lambda lab: -next(r["score"] for r in ranked if r["label"] == lab),
    )
    # Batching (with padding/packing) equals one at a time; pairs are accepted three ways.
    texts = [
        "short",
        "a somewhat longer text",
        ("premise text", "hypothesis"),
        {"text": "a", "text_pair": "b"},
    ]
    batched = classify(texts, top_k=2)
    for t, r in zip(texts, batched):
        alone = classify(t, top_k=2)
        assert [x["label"] for x in r] == [x["label"] for x in alone]
        assert r[0]["score"] == pytest.approx(alone[0]["score"], abs=1e-4)


def test_problem_type_picks_the_function():
    logits = torch.tensor([[2.0, -1.0]])
    multi = _config(num_labels=2, problem_type="multi_label_classification")
    single = _config(num_labels=2)
    regression = _config(num_labels=1, problem_type="regression")
    assert scores_to_labels(logits, multi, top_k=None)[0][0]["score"] == pytest.approx(
        1 / (1 + math.exp(-2))
    )
    assert scores_to_labels(logits, single)[0]["score"] == pytest.approx(
        torch.softmax(logits, -1)[0, 0].item()
    )
    assert scores_to_labels(torch.tensor([[3.5]]), regression)[0]["score"] == pytest.approx(3.5)


def test_document_classification_any_length(ckpt):
    folder = ckpt("GPT2ForDocumentClassification", num_labels=2, n_positions=32)
    classify = pipeline("document-classification", model=folder)
    long_doc = "the quick brown fox " * 100  # ~400 tokens, far past 32 positions
    r = classify(long_doc, top_k=None)
    assert len(r) == 2 and sum(x["score"] for x in r) == pytest.approx(1.0, abs=1e-5)


def test_token_classification_offsets_and_words(ckpt):
    tag = pipeline(
        "token-classification", model=ckpt("GPT2ForTokenClassification", id2label=NER_LABELS)
    )
    text = "Ann Lee flew to Paris."
    for strategy in ("none", "simple", "first", "average", "max"):
        for e in tag(text, aggregation_strategy=strategy, ignore_labels=()):
            assert text[e["start"] : e["end"]] == e["word"]
    # No entity is dropped with ignore_labels=(): aggregation "none" gives one per token.
    assert len(tag(text, ignore_labels=())) == len(tag.tokenizer.encode(text))
    words = ["Ann", "Lee", "flew"]
    ents = tag(words, is_split_into_words=True, aggregation_strategy="first", ignore_labels=())
    assert [e["word"] for e in ents if "entity_group" in e][0] in " ".join(words)
    assert all(e["word_index"] < 3 for e in ents)


def _ner_case():
    # Tokens: "Ann" "Lee" "son" "flew" "Paris" ; "Lee"+"son" is one word.
    text = "Ann Leeson flew Paris"
    offsets = [(0, 3), (4, 7), (7, 10), (11, 15), (16, 21)]
    word_ids = [0, 1, 1, 2, 3]
    probs = torch.tensor(
        [
            [0.1, 0.8, 0.05, 0.05, 0.0],  # B-PER
            [0.1, 0.1, 0.7, 0.1, 0.0],  # I-PER
            [0.1, 0.0, 0.0, 0.9, 0.0],  # B-LOC (inside the word "Leeson")
            [0.9, 0.05, 0.05, 0.0, 0.0],  # O
            [0.2, 0.0, 0.0, 0.75, 0.05],  # B-LOC
        ]
    )
    return text, offsets, word_ids, probs


def test_aggregation_rules_on_crafted_scores():
    text, offsets, word_ids, probs = _ner_case()

    def run(strategy):
        return aggregate_entities(probs, offsets, word_ids, text, NER_LABELS, strategy)

    assert [e["entity"] for e in run("none")] == ["B-PER", "I-PER", "B-LOC", "B-LOC"]
    # simple: B-PER I-PER -> PER; the B-LOC inside the word starts its own entity.
    simple = run("simple")
    assert [(e["entity_group"], e["word"]) for e in simple] == [
        ("PER", "Ann Lee"),
        ("LOC", "son"),
        ("LOC", "Paris"),
    ]
    assert simple[0]["score"] == pytest.approx((0.8 + 0.7) / 2)
    # first: "Leeson" takes its first piece's label (I-PER) -> one PER entity over two words.
    first = run("first")
    assert [(e["entity_group"], e["word"]) for e in first] == [
        ("PER", "Ann Leeson"),
        ("LOC", "Paris"),
    ]
    # max: the most confident piece of "Leeson" is B-LOC (0.9) -> the word is a location.
    assert [(e["entity_group"], e["word"]) for e in run("max")] == [
        ("PER", "Ann"),
        ("LOC", "Leeson"),
        ("LOC", "Paris"),
    ]
    # average: mean of [0.1,0.1,0.7,0.1,0] and [0.1,0,0,0.9,0] -> B-LOC 0.5 beats I-PER 0.35.
    avg = run("average")
    assert [(e["entity_group"], e["word"]) for e in avg] == [
        ("PER", "Ann"),
        ("LOC", "Leeson"),
        ("LOC", "Paris"),
    ]
    assert avg[1]["score"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="aggregation_strategy"):
        run("mean")


def test_question_answering(ckpt):
    qa = pipeline("question-answering", model=ckpt("GPT2ForQuestionAnswering", n_positions=48))
    context = "Ann met Bob in Paris. " * 12  # longer than one 48-token window
    a = qa(question="Who met Bob?", context=context)
    assert context[a["start"] : a["end"]] == a["answer"] and 0 <= a["score"] <= 1
    top = qa(question="Who met Bob?", context=context, top_k=3, max_answer_len=4, doc_stride=8)
    assert len(top) == 3 and top[0]["score"] >= top[-1]["score"]
    assert all(len(qa.tokenizer.encode(t["answer"])) <= 5 for t in top)
    both = qa(question=["Who?", "Where?"], context=["Ann met Bob.", "In Paris."])
    assert len(both) == 2
    maybe = qa(
        {"question": "Who?", "context": "Ann met Bob."}, handle_impossible_answer=True, top_k=5
    )
    assert any(m["answer"] == "" for m in maybe)


@pytest.mark.parametrize("name", ["GPT2ForMultipleChoice", "GPT2DoubleHeadsModel"])
def test_multiple_choice(ckpt, name):
    choose = pipeline("multiple-choice", model=ckpt(name))
    out = choose("The sky is", ["blue", "green", "made of cheese"])
    assert len(out["scores"]) == 3 and sum(out["scores"]) == pytest.approx(1.0, abs=1e-5)
    assert out["text"] == ["blue", "green", "made of cheese"][out["choice"]]
    # Different numbers of choices in one batch work too.
    many = choose(
        [{"context": "a", "choices": ["x", "y"]}, {"question": "b", "choices": ["x", "y", "z"]}]
    )
    assert [len(m["scores"]) for m in many] == [2, 3]


def test_zero_shot_classification_picks_the_most_likely_label(ckpt):
    from gpt2kit.models.lm import GPT2ForCausalLM
    from gpt2kit.tokenizer import GPT2Tokenizer

    folder = ckpt("GPT2LMHeadModel")
    zs = pipeline("zero-shot-classification", model=folder)
    labels = ["war", "love", "cooking dinner"]
    out = zs(
        "Cry havoc and let slip the dogs",
        candidate_labels=labels,
        hypothesis_template="It is about {label}.",
    )
    # The label with the highest mean log-likelihood of its hypothesis, computed by hand.
    lm, tok = GPT2ForCausalLM.from_pretrained(folder).eval(), GPT2Tokenizer.from_pretrained("gpt2")
    ctx = tok.encode("Cry havoc and let slip the dogs")
    means = {}
    for label in labels:
        hyp = tok.encode(f" It is about {label}.")
        logp = lm.score([ctx + hyp]).token_logprobs[0][-len(hyp) :]
        means[label] = logp.mean().item()
    assert out["labels"][0] == max(means, key=means.get)
    assert out["logprobs"][0] == pytest.approx(max(means.values()), abs=1e-4)
    assert sum(out["scores"]) == pytest.approx(1.0, abs=1e-5)
    summed = zs("Cry havoc", candidate_labels=labels, length_normalization="none")
    assert len(summed["labels"]) == 3


def test_zero_shot_choice(ckpt):
    choose = pipeline("zero-shot-choice", model=ckpt("GPT2LMHeadModel"))
    out = choose(
        "The cat sat on the", ["mat", "quantum chromodynamics"], length_normalization="none"
    )
    assert out["text"] == ["mat", "quantum chromodynamics"][out["choice"]]
    assert out["logprobs"][out["choice"]] == max(out["logprobs"])


def test_default_model_serves_generative_tasks():
    gen = pipeline("text-generation")
    text = gen("ROMEO:", max_new_tokens=3, do_sample=False)[0]["generated_text"]
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
    with pytest.raises(ValueError, match="needs model="):
        pipeline("question-answering")


@pytest.mark.parametrize(
    "task, name, needed",
    [
        ("question-answering", "GPT2LMHeadModel", "GPT2ForQuestionAnswering"),
        ("text-classification", "GPT2ForTokenClassification", "GPT2ForSequenceClassification"),
        ("token-classification", "GPT2ForSequenceClassification", "GPT2ForTokenClassification"),
        ("multiple-choice", "GPT2ForQuestionAnswering", "GPT2ForMultipleChoice"),
        ("text-generation", "GPT2ForQuestionAnswering", "GPT2LMHeadModel"),
        ("text2text", "GPT2LMHeadModel", "GPT2ForSequenceToSequence"),
        (
            "document-classification",
            "GPT2ForSequenceClassification",
            "GPT2ForDocumentClassification",
        ),
    ],
)
def test_wrong_variant_names_the_class_needed(ckpt, task, name, needed):
    with pytest.raises(WrongModelError, match=needed) as err:
        pipeline(task, model=ckpt(name))
    assert name in str(err.value)


def test_model_objects_are_accepted_and_checked(ckpt):
    from gpt2kit.models.question_answering import GPT2ForQuestionAnswering

    model = GPT2ForQuestionAnswering.from_pretrained(ckpt("GPT2ForQuestionAnswering"))
    qa = pipeline("question-answering", model=model)
    assert qa.model is model
    with pytest.raises(WrongModelError, match="GPT2ForTokenClassification"):
        pipeline("token-classification", model=model)
