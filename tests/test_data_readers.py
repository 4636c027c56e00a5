"""Readers: every file layout, label handling, and every kind of bad data (raise or counted skip)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gpt2kit.data.readers import (
    DataError,
    convert_tags,
    read_classification,
    read_conll,
    read_multiple_choice,
    read_seq2seq,
    read_squad,
    read_text,
)


def _w(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


# -- classification -------------------------------------------------------------------------


def test_csv_labels_sorted_and_pairs(tmp_path):
    p = _w(tmp_path / "t.csv", 'sentence1,sentence2,label\n"a, b",c,pos\nd,e,neg\n')
    r = read_classification(p)
    assert r.label_names == ["neg", "pos"] and r.problem_type == "single_label_classification"
    assert r[0] == {"text": "a, b", "text_pair": "c", "label": 1}
    assert r.id2label == {0: "neg", 1: "pos"}


def test_tsv_with_given_label_names_and_int_labels(tmp_path):
    p = _w(tmp_path / "t.tsv", "text\tlabel\nx\t2\ny\tneutral\n")
    r = read_classification(p, label_names=["neg", "pos", "neutral"])
    assert [x["label"] for x in r] == [2, 2]
    q = _w(tmp_path / "ints.tsv", "text\tlabel\nx\t0\ny\t2\n")
    assert read_classification(q).label_names == ["0", "1", "2"]


def test_regression_and_multilabel(tmp_path):
    p = _w(tmp_path / "r.jsonl", '{"text": "a", "label": 3.2}\n{"text": "b", "label": 1}\n')
    r = read_classification(p)
    assert r.problem_type == "regression" and r.label_names is None
    assert [x["label"] for x in r] == [3.2, 1.0]
    m = read_classification([{"text": "a", "labels": ["x", "z"]}, {"text": "b", "labels": ["y"]}])
    assert m.problem_type == "multi_label_classification"
    assert m.label_names == ["x", "y", "z"] and m[0]["label"] == [1.0, 0.0, 1.0]
    c = _w(tmp_path / "m.csv", "text,label\na,x|y\n")
    assert read_classification(c, label_separator="|")[0]["label"] == [1.0, 1.0]


def test_unknown_label_names_line_and_skip_counts(tmp_path, caplog):
    p = _w(tmp_path / "t.csv", "text,label\na,pos\nb,meh\nc,neg\n")
    with pytest.raises(
        DataError, match=r"t.csv:3: unknown label 'meh'.*Fix: add it to label_names"
    ):
        read_classification(p, label_names=["neg", "pos"])
    with caplog.at_level(logging.WARNING, logger="gpt2kit"):
        r = read_classification(p, label_names=["neg", "pos"], on_error="skip")
    assert len(r) == 2 and r.skipped == 1 and "meh" in r.problems[0]
    assert "skipped 1 bad examples" in caplog.text


def test_missing_column_and_empty_file(tmp_path):
    p = _w(tmp_path / "t.csv", "body,label\na,pos\n")
    with pytest.raises(DataError, match=r"no text column among \['body', 'label'\].*text_column"):
        read_classification(p)
    assert read_classification(p, text_column="body")[0]["text"] == "a"
    with pytest.raises(DataError, match="empty"):
        read_classification(_w(tmp_path / "e.csv", ""))
    # A JSON row without the label column the first row had.
    j = _w(tmp_path / "t.jsonl", '{"text": "a", "y": "p"}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=r"t.jsonl:2: no label column 'y'.*label_column="):
        read_classification(j, label_column="y")
    assert len(read_classification(j, label_column="y", on_error="skip")) == 1


def test_not_utf8_and_bad_json(tmp_path):
    p = _w(tmp_path / "t.csv", b"text,label\ncaf\xe9,a\nok,b\n")
    with pytest.raises(DataError, match=r"t.csv:2: bytes b'\\xe9' .* not UTF-8.*re-encode"):
        read_classification(p)
    r = read_classification(p, on_error="skip")
    assert [x["text"] for x in r] == ["ok"] and r.skipped == 1
    j = _w(tmp_path / "t.jsonl", '{"text": "a", "label": 1}\n{"text": \n')
    with pytest.raises(DataError, match="t.jsonl:2: not valid JSON"):
        read_classification(j)


def test_rows_in_memory_like_datasets():
    class FakeDataset:  # what datasets.Dataset offers: iteration over dict rows
        def __iter__(self):
            return iter([{"text": "a", "label": 0}, {"text": "b", "label": 1}])

    r = read_classification(FakeDataset())
    assert r.source == "<rows>" and [x["label"] for x in r] == [0, 1]


# -- CoNLL -----------------------------------------------------------------------------------

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
"""


def test_conll_sentences_and_scheme_conversion(tmp_path):
    p = _w(tmp_path / "train.txt", CONLL)
    r = read_conll(p)
    assert [s["words"] for s in r] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert r.label_names == ["O", "I-MISC", "I-ORG", "I-PER"]
    iob2 = read_conll(p, scheme="IOB1", to_scheme="IOB2")
    assert iob2[0]["tags"] == ["B-ORG", "O", "B-MISC"] and iob2[1]["tags"] == ["B-PER", "I-PER"]
    assert iob2.label_names == ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert [iob2.label_names[i] for i in iob2[1]["labels"]] == ["B-PER", "I-PER"]


def test_conll_malformed_line(tmp_path):
    p = _w(tmp_path / "bad.conll", "a B-PER\nb\n\nc O\n")
    with pytest.raises(DataError, match=r"bad.conll:2: 'b' is not a tag"):
        read_conll(p)
    r = read_conll(p, on_error="skip")
    assert [s["words"] for s in r] == [["c"]] and r.skipped == 1
    q = _w(tmp_path / "s.conll", "a S-PER\n")
    with pytest.raises(DataError, match="scheme IOB2"):
        read_conll(q, scheme="IOB2")
    assert read_conll(q, scheme="BIOES")[0]["tags"] == ["S-PER"]
    with pytest.raises(DataError, match="unknown tag 'S-PER'"):
        read_conll(q, label_names=["O"])
    with pytest.raises(DataError, match="empty"):
        read_conll(_w(tmp_path / "e.conll", ""))


def test_convert_tags_round_trip():
    bioes = ["B-PER", "E-PER", "S-LOC", "O", "B-ORG", "I-ORG", "E-ORG"]
    iob2 = convert_tags(bioes, "IOB2")
    assert iob2 == ["B-PER", "I-PER", "B-LOC", "O", "B-ORG", "I-ORG", "I-ORG"]
    assert convert_tags(iob2, "BIOES") == bioes
    assert convert_tags(["B-PER", "B-PER", "I-LOC"], "IOB1") == ["I-PER", "B-PER", "I-LOC"]


# -- SQuAD -----------------------------------------------------------------------------------


def _squad(tmp_path: Path, start: int = 0, impossible: bool = False) -> Path:
    qas = [
        {"id": "q1", "question": "Who ran?", "answers": [{"text": "Ann", "answer_start": start}]}
    ]
    if impossible:
        qas.append({"id": "q2", "question": "Why?", "answers": [], "is_impossible": True})
    data = {
        "version": "v2.0",
        "data": [{"title": "T", "paragraphs": [{"context": "Ann ran home.", "qas": qas}]}],
    }
    return _w(tmp_path / "squad.json", json.dumps(data, indent=2))


def test_squad_v1_and_v2(tmp_path):
    r = read_squad(_squad(tmp_path, impossible=True))
    assert r[0]["answers"] == {"text": ["Ann"], "answer_start": [0]} and not r[0]["is_impossible"]
    assert r[1]["is_impossible"] and r[1]["answers"]["text"] == []
    flat = read_squad(
        [
            {
                "id": "x",
                "question": "q",
                "context": "abc",
                "answers": {"text": ["b"], "answer_start": [1]},
            }
        ]
    )
    assert flat[0]["answers"]["text"] == ["b"]


def test_squad_answer_not_at_offset_names_line(tmp_path):
    p = _squad(tmp_path, start=4)
    with pytest.raises(
        DataError, match=r"squad.json:\d+: answer 'Ann' of question 'q1' is not at offset 4"
    ):
        read_squad(p)
    with pytest.raises(DataError, match="no examples left"):
        read_squad(p, on_error="skip")


# -- multiple choice, seq2seq, text ----------------------------------------------------------


def test_multiple_choice_layouts(tmp_path):
    swag = _w(
        tmp_path / "swag.csv",
        "sent1,sent2,ending0,ending1,ending2,ending3,label\nHe sat.,He,slept.,ran.,ate.,sang.,2\n",
    )
    assert read_multiple_choice(swag)[0] == {
        "context": "He sat.",
        "choices": ["He slept.", "He ran.", "He ate.", "He sang."],
        "label": 2,
    }
    cloze = [
        {
            "InputSentence1": "A.",
            "InputSentence2": "B.",
            "InputSentence3": "C.",
            "InputSentence4": "D.",
            "RandomFifthSentenceQuiz1": "E.",
            "RandomFifthSentenceQuiz2": "F.",
            "AnswerRightEnding": 2,
        }
    ]
    assert read_multiple_choice(cloze)[0] == {
        "context": "A. B. C. D.",
        "choices": ["E.", "F."],
        "label": 1,
    }
    generic = [
        {"question": "2+2?", "choices": ["3", "4"], "answer": "4"},
        {"question": "x", "choices": ["a", "b"], "answer": "A"},
    ]
    assert [e["label"] for e in read_multiple_choice(generic)] == [1, 0]
    with pytest.raises(DataError, match="answer 'c' is neither"):
        read_multiple_choice([{"context": "x", "choices": ["a", "b"], "label": "c"}])
    with pytest.raises(DataError, match="3 choices where earlier examples have 2"):
        read_multiple_choice(
            [{"context": "x", "choices": ["a", "b"]}, {"context": "y", "choices": ["a", "b", "c"]}]
        )


def test_seq2seq_columns(tmp_path):
    p = _w(tmp_path / "s.jsonl", '{"article": "long", "highlights": "short"}\n')
    assert read_seq2seq(p)[0] == {"source": "long", "target": "short"}
    with pytest.raises(DataError, match="no source/target columns"):
        read_seq2seq([{"a": 1}])
    assert read_seq2seq([{"src": "x"}], require_targets=False)[0] == {"source": "x"}


def test_read_text(tmp_path):
    assert read_text(_w(tmp_path / "a.txt", "héllo\n")) == "héllo\n"
    with pytest.raises(DataError, match=r"b.txt:2: .*not UTF-8"):
        read_text(_w(tmp_path / "b.txt", b"ok\n\xff\n"))
