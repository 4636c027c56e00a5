"""The standard datasets in their own file formats, end to end through the CLI, scored by
the official algorithms.

Each test writes a small file exactly as the dataset ships it (CoNLL-2003 IOB1 with
-DOCSTART- lines and four columns, the same in IOB2, SQuAD v1.1 and v2.0 JSON, GLUE SST-2
TSV, Story Cloze CSV, plain text), trains a tiny GPT-2 from scratch through `gpt2kit train`
(a few steps: the numbers need not be good, only comparable), runs `gpt2kit evaluate --json
--predictions`, scores the predictions file with a faithful port of the official scorer
(`official_scorers.py`: conlleval, evaluate-v1.1.py, evaluate-v2.0.py) and asserts that
gpt2kit printed the same numbers. Sentences longer than the window are scored word for word;
two runs with one seed are bit-identical.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from gpt2kit.cli import main
from official_scorers import conlleval, read_squad_dataset, squad_v1_evaluate, squad_v2_evaluate

TINY = ["--model", "gpt2", "--from-scratch", "--n-layer", "1", "--n-embd", "32",
        "--n-head", "2", "--n-positions", "64"]  # fmt: skip
WORDS = ["the", "council", "said", "on", "Monday", "that", "it", "would", "meet", "in", "a",
         "week", "after", "talks", "with", "officials", "."]  # fmt: skip
ENTITIES = {"PER": ["Peter Blackburn", "Werner Zwingmann", "Ann"], "LOC": ["Germany", "New York"],
            "ORG": ["European Commission", "EU"], "MISC": ["German", "British"]}  # fmt: skip


@pytest.fixture(scope="module")
def tok() -> Any:
    from gpt2kit.tokenizer import GPT2Tokenizer

    return GPT2Tokenizer.from_pretrained("gpt2")


def run(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


def train(tmp: Path, task: str, train_file: Path, eval_file: Path | None, *extra: str) -> Path:
    out = tmp / f"model-{task}"
    evals = ["--eval-file", str(eval_file)] if eval_file else []
    run("train", "--task", task, *TINY, "--train-file", str(train_file), *evals,
        "--output-dir", str(out), "--max-steps", "6", "--batch-size", "4", "--lr", "3e-3",
        "--no-progress", "--seed", "0", *extra)  # fmt: skip
    return out


def evaluate(tmp: Path, task: str, model: Path, eval_file: Path, *extra: str) -> tuple[dict, Path]:
    metrics, preds = tmp / f"{task}.json", tmp / f"{task}.predictions"
    run("evaluate", "--task", task, "--model", str(model), "--eval-file", str(eval_file),
        "--json", str(metrics), "--predictions", str(preds), *extra)  # fmt: skip
    return json.loads(metrics.read_text()), preds


# -- CoNLL-2003 --------------------------------------------------------------------------------
def conll_sentence(rng: random.Random, n: int, scheme: str) -> list[tuple[str, str]]:
    """Words with NER tags; IOB1 (CoNLL-2003 as shipped: I- unless an entity follows one of
    its type) or IOB2 (B- first)."""
    out: list[tuple[str, str]] = []
    last_type = None
    while len(out) < n:
        if rng.random() < 0.3:
            type_ = rng.choice(sorted(ENTITIES))
            words = rng.choice(ENTITIES[type_]).split()
            begin = "B" if scheme == "IOB2" or last_type == type_ else "I"
            out += [(w, f"{begin if i == 0 else 'I'}-{type_}") for i, w in enumerate(words)]
            last_type = type_
        else:
            out.append((rng.choice(WORDS), "O"))
            last_type = None
    return out


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    """CoNLL-2003's layout: `word POS chunk NER`, -DOCSTART- lines opening documents."""
    lines = []
    for i, sentence in enumerate(sentences):
        if i % 5 == 0:
            lines += ["-DOCSTART- -X- -X- O", ""]
        lines += [f"{w} NNP I-NP {t}" for w, t in sentence] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2"])
def test_conll2003_equals_conlleval_and_scores_long_sentences_whole(tmp_path, scheme):
    rng = random.Random(1)
    train_set = [conll_sentence(rng, rng.randint(4, 14), scheme) for _ in range(40)]
    # the eval file: short sentences, one of 70 words (longer than the 24-token window), and
    # a type the training file lacks (a label anyway: train reads both files' tags)
    dev = [conll_sentence(rng, rng.randint(4, 14), scheme) for _ in range(12)]
    dev.append(conll_sentence(rng, 70, scheme))
    dev.append([("Oslo", f"{'B' if scheme == 'IOB2' else 'I'}-GPE"), ("won", "O")])
    train_file = write_conll(tmp_path / "eng.train", train_set)
    dev_file = write_conll(tmp_path / "eng.testa", dev)
    model = train(tmp_path, "token-classification", train_file, dev_file, "--max-length", "24",
                  "--max-steps", "60", "--batch-size", "8")  # fmt: skip
    metrics, preds = evaluate(
        tmp_path, "token-classification", model, dev_file, "--max-length", "24"
    )
    lines = preds.read_text().splitlines()
    # every word of the file, in order, with its gold tag: nothing left out
    rows = [line.split() for line in lines if line]
    assert [(r[0], r[1]) for r in rows] == [wt for s in dev for wt in s]
    assert sum(1 for line in lines if not line) == len(dev)
    official = conlleval(lines)
    assert official["tokens"] == sum(len(s) for s in dev)
    assert metrics["token_accuracy"] * 100 == pytest.approx(official["accuracy"], abs=1e-9)
    for ours, theirs in (("precision", "precision"), ("recall", "recall"), ("f1", "FB1")):
        assert metrics[f"entity_{ours}"] * 100 == pytest.approx(official[theirs], abs=1e-9)
    for type_, s in official["per_type"].items():
        for ours, theirs in (("precision", "precision"), ("recall", "recall"), ("f1", "FB1")):
            assert metrics[f"{type_}_{ours}"] * 100 == pytest.approx(s[theirs], abs=1e-9)
    assert official["phrases"] > 20 and official["found_guessed"] > 0  # a real comparison
    config = json.loads((model / "config.json").read_text())
    assert "I-GPE" in config["id2label"].values() or "B-GPE" in config["id2label"].values()


def test_entity_f1_equals_conlleval_on_random_tag_sequences():
    """Ill-formed sequences too (I- after O, type changes inside a chunk, B- then I- of
    another type): the span-set reading and conlleval's running state agree."""
    from gpt2kit.evaluation import entity_f1

    rng = random.Random(7)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    for _ in range(50):
        gold = [[rng.choice(tags) for _ in range(rng.randint(1, 15))] for _ in range(8)]
        pred = [[rng.choice(tags) if rng.random() < 0.5 else t for t in g] for g in gold]
        lines = [x for g, p in zip(gold, pred) for x in [*(f"w {a} {b}" for a, b in zip(g, p)), ""]]
        ours, theirs = entity_f1(pred, gold), conlleval(lines)
        assert ours["f1"] * 100 == pytest.approx(theirs["FB1"], abs=1e-9)
        assert ours["precision"] * 100 == pytest.approx(theirs["precision"], abs=1e-9)
        assert ours["recall"] * 100 == pytest.approx(theirs["recall"], abs=1e-9)
        assert ours["accuracy"] * 100 == pytest.approx(theirs["accuracy"], abs=1e-9)


def test_long_sentence_scored_word_for_word(tok):
    """Gold labels as logits over the windows give back every word's gold tag, for sentences
    far longer than the window and windows of any overlap."""
    from gpt2kit.data import load_task_data
    from gpt2kit.evaluation import compute_metrics

    rng = random.Random(0)
    rows = [
        {"words": [w for w, _ in s], "tags": [t for _, t in s]}
        for s in (conll_sentence(rng, n, "IOB2") for n in (3, 50, 120, 9))
    ]
    for max_length, stride in ((8, 0), (8, 3), (16, 8), (300, None)):
        ds, collate, info = load_task_data(
            "token-classification", rows, tok, max_length=max_length, stride=stride
        )
        assert max(len(f["input_ids"]) for f in ds.features) <= max_length
        batch = collate([ds[i] for i in range(len(ds))])
        labels = batch["labels"]
        # each labelled word is labelled in exactly one window
        assert int((labels != -100).sum()) == sum(len(r["words"]) for r in rows)
        perfect = torch.nn.functional.one_hot(labels.clamp(min=0), info["num_labels"]).float()
        tags = info["metrics"]["decode"](perfect)
        assert tags == [r["tags"] for r in rows]
        m = compute_metrics("token-classification", **info["metrics"])(perfect, labels)
        assert m["entity_f1"] == 1.0 and m["token_accuracy"] == 1.0


def test_label_names_option_and_config_key(tmp_path):
    rng = random.Random(2)
    train_file = write_conll(tmp_path / "train.conll", [conll_sentence(rng, 6, "IOB2")] * 8)
    names = "O,B-PER,I-PER,B-LOC,I-LOC,B-ORG,I-ORG,B-MISC,I-MISC,B-EXTRA"
    model = train(tmp_path, "token-classification", train_file, None, "--label-names", names)
    config = json.loads((model / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(10)] == names.split(",")
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"label_names": names.split(",")[::-1]}))
    out = tmp_path / "from-config"
    run("train", "--task", "token-classification", *TINY, "--train-file", str(train_file),
        "--output-dir", str(out), "--max-steps", "1", "--no-progress", "--config", str(cfg))  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["0"] == "B-EXTRA"
    # a tag outside the given names is an error that names the option
    with pytest.raises(Exception, match="label-names"):
        from gpt2kit.cli.train import main as train_main

        train_main(["train", "--task", "token-classification", *TINY, "--train-file",
                    str(train_file), "--output-dir", str(tmp_path / "x"), "--max-steps", "1",
                    "--no-progress", "--label-names", "O,B-PER"])  # fmt: skip


# -- SQuAD -------------------------------------------------------------------------------------
def squad_json(rng: random.Random, n_articles: int, v2: bool) -> dict[str, Any]:
    names = ["Anna", "Peter", "Maria", "John", "Laura"]
    data = []
    for a in range(n_articles):
        paragraphs = []
        for p in range(2):
            who = rng.choice(names)
            filler = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
            context = f"{filler} The captain is {who}. {filler}"
            start = context.index(who)
            qas = [{"id": f"{a}-{p}-0", "question": "Who is the captain?",
                    "answers": [{"text": who, "answer_start": start},
                                {"text": f"captain is {who}", "answer_start": start - 11}]}]  # fmt: skip
            if v2:
                qas.append({"id": f"{a}-{p}-1", "question": "Who is the king?", "answers": [],
                            "plausible_answers": [{"text": who, "answer_start": start}],
                            "is_impossible": True})  # fmt: skip
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": f"Article {a}", "paragraphs": paragraphs})
    return {"version": "v2.0" if v2 else "1.1", "data": data}


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_squad_equals_official_script(tmp_path, version):
    rng = random.Random(3)
    v2 = version == "2.0"
    train_file = tmp_path / f"train-v{version}.json"
    dev_file = tmp_path / f"dev-v{version}.json"
    train_file.write_text(json.dumps(squad_json(rng, 6, v2)))
    dev_file.write_text(json.dumps(squad_json(rng, 3, v2)))
    model = train(tmp_path, "question-answering", train_file, dev_file, "--max-length", "48")
    metrics, preds = evaluate(tmp_path, "question-answering", model, dev_file, "--max-length", "48")
    answers = json.loads(preds.read_text())
    dataset = read_squad_dataset(dev_file)
    ids = [qa["id"] for art in dataset for p in art["paragraphs"] for qa in p["qas"]]
    assert sorted(answers) == sorted(ids)
    if v2:
        official = squad_v2_evaluate(dataset, answers)
        for key in ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"):
            assert metrics[key] * 100 == pytest.approx(official[key], abs=1e-9), key
        assert metrics["total"] == official["total"]
    else:
        official = squad_v1_evaluate(dataset, answers)
        assert metrics["exact_match"] * 100 == pytest.approx(official["exact_match"], abs=1e-9)
        assert metrics["f1"] * 100 == pytest.approx(official["f1"], abs=1e-9)
        # a missing question scores 0 in both
        from gpt2kit.evaluation import squad_metrics

        refs = {qa["id"]: [a["text"] for a in qa["answers"]]
                for art in dataset for p in art["paragraphs"] for qa in p["qas"]}  # fmt: skip
        fewer = dict(list(answers.items())[1:])
        assert squad_metrics(fewer, refs)["f1"] == pytest.approx(
            squad_v1_evaluate(dataset, fewer)["f1"], abs=1e-9
        )
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("f1",) if k in metrics)  # fractions


def test_answer_json_carries_question_id_and_max_answer_length(tmp_path, capsys):
    from gpt2kit import GPT2Config
    from gpt2kit.models.question_answering import GPT2ForQuestionAnswering
    from gpt2kit.tasks.qa import MAX_ANSWER_LENGTH

    folder = tmp_path / "qa"
    torch.manual_seed(0)
    GPT2ForQuestionAnswering(GPT2Config(n_layer=1, n_embd=16, n_head=2)).save_pretrained(folder)
    items = tmp_path / "q.jsonl"
    items.write_text(json.dumps({"id": "q7", "question": "Who?", "context": "Ann met Bob."}) + "\n")
    capsys.readouterr()
    assert main(["answer", "-m", str(folder), "--json", "--file", str(items)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["id"] == "q7" and out["question"] == "Who?"
    assert MAX_ANSWER_LENGTH == 30


# -- GLUE SST-2 --------------------------------------------------------------------------------
def write_sst2(path: Path, rng: random.Random, n: int) -> Path:
    good, bad = ["great", "moving", "funny", "fine"], ["dull", "awful", "boring", "bad"]
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(WORDS[:8]) for _ in range(rng.randint(2, 8))]
        words.insert(rng.randrange(len(words)), rng.choice(good if label else bad))
        rows.append((" ".join(words) + " ", label))  # SST-2 sentences end in a space
    with path.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(["sentence", "label"])
        w.writerows(rows)
    return path


def sha(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_sst2_tsv_seeded_runs_bit_identical_predictions_and_transformers(tmp_path):
    rng = random.Random(4)
    train_file = write_sst2(tmp_path / "train.tsv", rng, 48)
    dev_file = write_sst2(tmp_path / "dev.tsv", rng, 20)
    a = train(tmp_path / "a", "sequence-classification", train_file, dev_file)
    b = train(tmp_path / "b", "sequence-classification", train_file, dev_file)
    assert sha(a) == sha(b)  # --seed decides the head's init, data order and dropout
    assert json.loads((a / "train_results.json").read_text()) == json.loads(
        (b / "train_results.json").read_text()
    )
    c = train(tmp_path / "c", "sequence-classification", train_file, dev_file, "--seed", "1")
    assert sha(c) != sha(a)
    metrics, preds = evaluate(tmp_path, "sequence-classification", a, dev_file)
    predicted = preds.read_text().splitlines()
    with dev_file.open() as f:
        gold = [row["label"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    assert len(predicted) == len(gold)
    assert metrics["accuracy"] == pytest.approx(
        sum(p == g for p, g in zip(predicted, gold)) / len(gold), abs=1e-12
    )
    # transformers loads the saved classifier and batches padded rows (pad_token_id is saved)
    config = json.loads((a / "config.json").read_text())
    assert config["pad_token_id"] == 50256
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2ForSequenceClassification.from_pretrained(a).eval()
    from gpt2kit.models.sequence_classification import GPT2ForSequenceClassification

    ours = GPT2ForSequenceClassification.from_pretrained(a).eval()
    ids = torch.tensor([[464, 3290, 318, 1049], [464, 3290, 50256, 50256]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).logits
        mine = ours(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


def test_packed_text_classification_counts_tokens_not_mask_entries():
    from gpt2kit.data.collators import PackedTextCollator
    from gpt2kit.training.trainer import _count_tokens

    texts = [{"input_ids": list(range(1, n + 1)), "label": 0} for n in (5, 9, 3, 12, 7)]
    batch = PackedTextCollator(16)(texts)
    assert _count_tokens(batch) == 5 + 9 + 3 + 12 + 7


# -- Story Cloze -------------------------------------------------------------------------------
def test_story_cloze_csv_predictions(tmp_path):
    rng = random.Random(5)
    header = ["InputStoryid", "InputSentence1", "InputSentence2", "InputSentence3",
              "InputSentence4", "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2",
              "AnswerRightEnding"]  # fmt: skip

    def write(path: Path, n: int) -> Path:
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for i in range(n):
                s = [" ".join(rng.choice(WORDS) for _ in range(5)) + "." for _ in range(4)]
                w.writerow([f"id{i}", *s, "He was happy.", "He was sad.", rng.randint(1, 2)])
        return path

    train_file, dev_file = write(tmp_path / "train.csv", 16), write(tmp_path / "val.csv", 10)
    model = train(tmp_path, "multiple-choice", train_file, dev_file)
    metrics, preds = evaluate(tmp_path, "multiple-choice", model, dev_file)
    with dev_file.open() as f:
        gold = [int(r["AnswerRightEnding"]) - 1 for r in csv.DictReader(f)]
    chosen = [int(x) for x in preds.read_text().split()]
    assert len(chosen) == len(gold)
    assert metrics["accuracy"] == pytest.approx(
        sum(c == g for c, g in zip(chosen, gold)) / len(gold), abs=1e-12
    )


# -- plain text: sliding-window perplexity -----------------------------------------------------
def guide_perplexity(model: Any, ids: torch.Tensor, max_length: int, stride: int) -> float:
    """transformers' perplexity guide (docs: perplexity of fixed-length models), with each
    window's loss weighted by the tokens it actually scores."""
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    seq_len = ids.shape[1]
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        trg_len = end - prev_end
        input_ids = ids[:, begin:end]
        target = input_ids.clone()
        target[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target).loss
        scored = int((target[:, 1:] != -100).sum())
        nll_sum += float(loss) * scored
        n_tokens += scored
        prev_end = end
        if end == seq_len:
            break
    return float(torch.exp(torch.tensor(nll_sum / n_tokens, dtype=torch.float64)))


def test_causal_lm_sliding_window_perplexity(tmp_path, tok, capsys):
    from gpt2kit.models.lm import GPT2LMHeadModel

    corpus = tmp_path / "wiki.txt"
    rng = random.Random(6)
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(30)))
    model_dir = train(tmp_path, "causal-lm", corpus, corpus, "--block-size", "32")
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    ids = torch.tensor([tok(corpus.read_text())["input_ids"]])
    for block, stride in ((32, 32), (32, 8), (64, 16)):
        report = tmp_path / f"ppl-{block}-{stride}.json"
        capsys.readouterr()
        run("evaluate", "--task", "causal-lm", "--model", str(model_dir), "--eval-file",
            str(corpus), "--block-size", str(block), "--stride", str(stride), "--json", str(report))  # fmt: skip
        printed = capsys.readouterr().out
        assert f"stride {stride}" in printed or "non-overlapping" in printed
        metrics = json.loads(report.read_text())
        assert (metrics["block_size"], metrics["stride"]) == (block, stride)
        assert metrics["perplexity"] == pytest.approx(
            guide_perplexity(model, ids, block, stride), rel=1e-5
        )
    # without --block-size: the training block size, said so
    report = tmp_path / "ppl-default.json"
    capsys.readouterr()
    run("evaluate", "--task", "causal-lm", "--model", str(model_dir), "--eval-file", str(corpus),
        "--json", str(report))  # fmt: skip
    assert "training block size" in capsys.readouterr().out
    assert json.loads(report.read_text())["block_size"] == 32


# -- --max-minutes shortens the schedule -------------------------------------------------------
def test_max_minutes_shortens_the_lr_schedule(tmp_path, monkeypatch):
    from gpt2kit import GPT2Config, GPT2LMHeadModel
    from gpt2kit.training import trainer as trainer_module
    from gpt2kit.training.arguments import TrainingArguments
    from gpt2kit.training.trainer import Trainer

    clock = {"t": 0.0}
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: clock["t"])

    class Tick:  # every optimizer step takes one "second"
        def on_step_end(self, trainer: Any) -> None:
            clock["t"] += 1.0

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    data = [{"input_ids": torch.arange(8) % 5, "labels": torch.arange(8) % 5}] * 64
    args = TrainingArguments(str(tmp_path), max_steps=1000, max_time_minutes=0.5,
                             disable_tqdm=True, learning_rate=1e-2, logging_steps=1,
                             per_device_train_batch_size=1)  # fmt: skip
    trainer = Trainer(model, args, data, callbacks=[Tick()])
    out = trainer.train()
    assert 28 <= out.global_step <= 32  # 30 "seconds"
    # the linear schedule ends when time does, not at step 1000
    assert trainer.scheduler.get_last_lr()[0] <= 1e-2 * 2 / 30


# -- tag --words -------------------------------------------------------------------------------
def test_tag_words_aggregates_whole_words(tmp_path, capsys):
    from gpt2kit import GPT2Config
    from gpt2kit.models.token_classification import GPT2ForTokenClassification

    folder = tmp_path / "ner"
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, id2label={0: "B-LOC", 1: "I-LOC"})
    GPT2ForTokenClassification(config).save_pretrained(folder)
    capsys.readouterr()
    words = "LEICESTERSHIRE TAKE OVER AT TOP AFTER INNINGS VICTORY"
    assert main(["tag", "-m", str(folder), "--words", "--json", words]) == 0
    entities = json.loads(capsys.readouterr().out)["entities"]
    text = " ".join(words.split())
    for e in entities:  # every entity is whole words
        assert e["word"] in text and all(w in words.split() for w in e["word"].split())
        assert (e["start"] == 0 or text[e["start"] - 1] == " ") and (
            e["end"] == len(text) or text[e["end"]] == " "
        )


def test_tag_pipeline_tags_texts_longer_than_the_window(tmp_path):
    from gpt2kit import GPT2Config
    from gpt2kit.models.token_classification import GPT2ForTokenClassification
    from gpt2kit.pipelines import pipeline

    folder = tmp_path / "ner"
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16,
                        id2label={0: "O", 1: "B-LOC", 2: "I-LOC"})  # fmt: skip
    GPT2ForTokenClassification(config).save_pretrained(folder)
    tag = pipeline("token-classification", model=str(folder))
    text = " ".join(WORDS * 4)  # ~70 tokens, 16 positions
    tokens = tag(text, aggregation_strategy="none", ignore_labels=())
    assert [t["index"] for t in tokens] == list(range(len(tag.tokenizer(text)["input_ids"])))
    assert tokens[-1]["end"] == len(text)
    # with a window as long as the text, the first window's tokens are unchanged
    model = GPT2ForTokenClassification.from_pretrained(folder).eval()
    ids = torch.tensor([tag.tokenizer(text)["input_ids"][:16]])
    with torch.no_grad():
        probs = model(input_ids=ids).logits.softmax(-1)[0]
    assert [t["score"] for t in tokens[:16]] == pytest.approx(
        probs.max(-1).values.tolist(), abs=1e-6
    )


# -- recipes -----------------------------------------------------------------------------------
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.mark.parametrize(
    "recipe, files",
    [
        ("sst2.sh", ["d/train.tsv", "d/dev.tsv"]),
        ("conll2003.sh", ["d/eng.train", "d/eng.testa", "d/eng.testb"]),
        ("squad_v1.sh", ["d/train-v1.1.json", "d/dev-v1.1.json"]),
        ("story_cloze.sh", ["val.csv", "test.csv"]),
    ],
)
def test_recipes_call_the_cli_with_options_it_has(tmp_path, recipe, files):
    """Each recipe runs (a stub stands in for `gpt2kit` and records its arguments), and
    every recorded command line parses with the real `gpt2kit` parser."""
    import os
    import shlex
    import subprocess

    from gpt2kit.cli import build_parser

    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x\n")
    log = tmp_path / "calls.txt"
    stub = tmp_path / "gpt2kit"
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%q " "$@" >> {log}\necho >> {log}\n')
    stub.chmod(0o755)
    args = (
        [str(tmp_path / "d")] if files[0].startswith("d/") else [str(tmp_path / f) for f in files]
    )
    env = {**os.environ, "GPT2KIT": str(stub), "OUT": str(tmp_path / "out")}
    subprocess.run(["bash", str(RECIPES / recipe), *args], check=True, env=env)
    calls = [shlex.split(line) for line in log.read_text().splitlines() if line.strip()]
    assert [c[0] for c in calls][:2] == ["train", "evaluate"]
    parser = build_parser()
    for call in calls:
        parsed = parser.parse_args(call)
        assert parsed.task and parsed.eval_file
    # without the data, the recipe says what is missing and where the dataset comes from
    missing = subprocess.run(["bash", str(RECIPES / recipe), str(tmp_path / "nowhere")],
                             env=env, capture_output=True, text=True)  # fmt: skip
    assert missing.returncode != 0 and "missing" in missing.stderr and "http" in missing.stderr


@pytest.mark.slow  # six fresh `gpt2kit` processes: ~40 s alone, minutes on a loaded machine
def test_docs_cli_offline_tour_runs_as_written(tmp_path):
    """docs/cli.md's offline tour (the README's CLI tour's offline form) runs with no network."""
    import os
    import re
    import subprocess
    import sys

    text = (RECIPES.parent / "docs" / "cli.md").read_text()
    tour = text.split("## Offline tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", tour, flags=re.S).group(1)
    script = f'set -euo pipefail\ngpt2kit() {{ "{sys.executable}" -m gpt2kit "$@"; }}\n{block}'
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert len((tmp_path / "out" / "dev.labels").read_text().split()) == 4
    assert (tmp_path / "out" / "sst-bf16" / "config.json").is_file()


def test_data_formats_minimal_examples_load(tmp_path, tok):
    """The minimal files in docs/data-formats.md load as written."""
    import re

    from gpt2kit.data import load_task_data

    text = (RECIPES.parent / "docs" / "data-formats.md").read_text()
    squad = re.search(r"Minimal v1.1 file:\n\n```json\n(.*?)```", text, flags=re.S).group(1)
    (tmp_path / "dev-v1.1.json").write_text(squad)
    _, _, info = load_task_data("question-answering", tmp_path / "dev-v1.1.json", tok)
    assert info["num_examples"] == 1
    cloze = re.search(r"Story Cloze CSV \(as distributed\):\n\n```\n(.*?)```", text, flags=re.S)
    (tmp_path / "val.csv").write_text(cloze.group(1))
    ds, _, _ = load_task_data("multiple-choice", tmp_path / "val.csv", tok)
    assert ds[0]["label"] == 1 and len(ds[0]["choices"]) == 2
    conll = re.search(r"`eng.train` \(as distributed, IOB1\):\n\n```\n(.*?)```", text, flags=re.S)
    (tmp_path / "eng.train").write_text(conll.group(1))
    _, _, info = load_task_data("token-classification", tmp_path / "eng.train", tok)
    assert info["metrics"]["references"] == [["I-ORG", "O", "I-MISC", "O", "O"]]
    sst = re.search(r"GLUE SST-2 `train.tsv` \(as distributed; no quoting\):\n\n```\n(.*?)```",
                    text, flags=re.S)  # fmt: skip
    (tmp_path / "train.tsv").write_text(sst.group(1))
    ds, _, info = load_task_data("sequence-classification", tmp_path / "train.tsv", tok)
    assert len(ds) == 2 and info["id2label"] == {0: "0"}


def test_generation_predictions_one_text_per_line(tmp_path, tok):
    from gpt2kit.evaluation.predictions import write_predictions

    class Echo:  # stands in for a seq2seq model: "generates" its source
        def eval(self) -> None:
            pass

        def generate(self, sources: list, **kwargs: Any) -> list:
            assert kwargs == {"max_new_tokens": 5, "do_sample": False}
            return [list(s) for s in sources]

    texts = ["the cat\nsat", "a dog"]
    data = [{"source_ids": tok(t)["input_ids"], "target_ids": []} for t in texts]
    n = write_predictions(tmp_path / "p.txt", "seq2seq", None, {}, model=Echo(), tokenizer=tok,
                          dataset=data, batch_size=1, max_new_tokens=5)  # fmt: skip
    assert n == 2 and (tmp_path / "p.txt").read_text().splitlines() == ["the cat sat", "a dog"]
    with pytest.raises(ValueError, match="perplexity"):
        from gpt2kit.cli.train import main as train_main

        train_main(["evaluate", "--task", "causal-lm", "--model", "x", "--eval-file", "y",
                    "--predictions", str(tmp_path / "q")])  # fmt: skip
