"""Reliability: data readers (issue 18, "Data readers": "bad data is never dropped silently")
and the model's own input checks ("Model and generation inputs", model part). One test
per case; docs/reliability.md has a row for each."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from gpt2kit.config import GPT2Config
from gpt2kit.data.readers import (
    DataError,
    read_classification,
    read_multiple_choice,
    read_seq2seq,
    read_squad,
)
from gpt2kit.models.lm import GPT2LMHeadModel
from gpt2kit.nn.backbone import GPT2Model


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def test_duplicate_header_columns_are_an_error(tmp_path):
    p = write(tmp_path / "d.csv", "text,label,text\na,pos,b\n")
    with pytest.raises(DataError, match=r"d\.csv:1: the header names column\(s\) \['text'\] more"):
        read_classification(p)
    p = write(tmp_path / "s.csv", "text, label ,label\na,pos,neg\n")  # the same once stripped
    with pytest.raises(DataError, match=r"\['label'\] more than once"):
        read_classification(p)


def test_empty_label_cell_is_an_error_at_file_line(tmp_path):
    p = write(tmp_path / "e.csv", "text,label\ngood,pos\nbad,\nok,neg\n")
    with pytest.raises(DataError, match=r"e\.csv:3: empty label"):
        read_classification(p)
    p = write(tmp_path / "e.jsonl", '{"text": "a", "label": "pos"}\n{"text": "b", "label": null}\n')
    with pytest.raises(DataError, match=r"e\.jsonl:2: the label \('label'\) is null"):
        read_classification(p)
    skipped = read_classification(tmp_path / "e.csv", on_error="skip")
    assert skipped.skipped == 1 and len(skipped) == 2
    # prediction inputs may leave labels empty; a multi-label cell may name no class
    unlabeled = read_classification(tmp_path / "e.csv", require_labels=False)
    assert "label" not in unlabeled[1] and len(unlabeled) == 3
    multi = read_classification(
        write(tmp_path / "m.csv", "text,label\na,x|y\nb,\n"), label_separator="|"
    )
    assert [x["label"] for x in multi] == [[1.0, 1.0], [0.0, 0.0]]


def test_spaces_around_headers_and_values_are_one_class(tmp_path):
    p = write(tmp_path / "s.csv", " text , label \ngood, pos\nbad,neg\nfine,pos \n")
    r = read_classification(p)
    assert r.label_names == ["neg", "pos"]
    assert [x["label"] for x in r] == [1, 0, 1]
    rows = read_classification([{"text": "a", "label": " pos"}, {"text": "b", "label": "pos"}])
    assert rows.label_names == ["pos"]


def test_blank_row_is_reported_or_counted(tmp_path):
    p = write(tmp_path / "b.csv", "text,label\ngood,pos\n,\nbad,neg\n")
    with pytest.raises(DataError, match=r"b\.csv:3: blank row \(2 empty fields\)"):
        read_classification(p)
    r = read_classification(p, on_error="skip")
    assert r.skipped == 1 and "b.csv:3: blank row" in r.problems[0] and len(r) == 2
    # an empty line (no fields at all) is layout, not data
    q = write(tmp_path / "ok.csv", "text,label\ngood,pos\n\nbad,neg\n\n")
    assert read_classification(q).skipped == 0


@pytest.mark.parametrize("value", [{"a": 1}, ["x", "y"], True])
def test_json_object_or_list_where_text_is_expected(tmp_path, value):
    p = write(tmp_path / "t.jsonl", json.dumps({"text": value, "label": "pos"}) + "\n")
    with pytest.raises(DataError, match=rf"t\.jsonl:1: the text is a JSON {type(value).__name__}"):
        read_classification(p)
    q = write(tmp_path / "s.jsonl", json.dumps({"source": value, "target": "x"}) + "\n")
    with pytest.raises(DataError, match=r"s\.jsonl:1: the source is a JSON"):
        read_seq2seq(q)
    m = write(tmp_path / "m.jsonl", json.dumps({"context": value, "choices": ["a", "b"]}) + "\n")
    with pytest.raises(DataError, match=r"m\.jsonl:1: the context is a JSON"):
        read_multiple_choice(m)


@pytest.mark.parametrize("label", ["nan", "inf", "-inf", "NaN"])
def test_nan_and_inf_labels_are_errors_at_file_line(tmp_path, label):
    p = write(tmp_path / "n.csv", f"text,label\na,1.5\nb,{label}\n")
    with pytest.raises(DataError, match=rf"n\.csv:3: label '{label}' is not a finite number"):
        read_classification(p)
    q = write(tmp_path / "n.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": NaN}\n')
    with pytest.raises(DataError, match=r"n\.jsonl:2: label nan is not a finite number"):
        read_classification(q)


def test_lone_cr_line_endings_read_with_line_numbers(tmp_path):
    p = write(tmp_path / "mac.csv", b"text,label\rgood,pos\rbad,neg\rworse,\r")
    with pytest.raises(DataError, match=r"mac\.csv:4: empty label"):
        read_classification(p)
    q = write(tmp_path / "mac2.csv", b"text,label\rgood,pos\rbad,neg\r")
    r = read_classification(q)
    assert [x["text"] for x in r] == ["good", "bad"] and r.label_names == ["neg", "pos"]


def test_fields_over_csv_limit_are_read(tmp_path):
    long = "word " * 60_000  # 300,000 characters: past csv's 131,072 default
    p = write(tmp_path / "long.csv", f'text,label\n"{long}",pos\nshort,neg\n')
    r = read_classification(p)
    assert len(r[0]["text"]) == len(long) and r[1]["text"] == "short"


def test_unclosed_quote_is_an_error_at_file_line(tmp_path):
    p = write(tmp_path / "q.csv", 'text,label\ngood,pos\n"bad,neg\n')
    with pytest.raises(DataError, match=r"q\.csv:\d+: "):
        read_classification(p)


def test_tsv_quotes_are_text_as_glue_writes_them(tmp_path):
    # GLUE's TSVs are unquoted: a sentence opening with `"` must not swallow the rows after it
    p = write(tmp_path / "train.tsv", 'sentence\tlabel\n"a quote\t1\nplain\t0\nthird "x"\t1\n')
    rows = read_classification(p)
    assert [r["text"] for r in rows] == ['"a quote', "plain", 'third "x"']


def test_invalid_json_file_named(tmp_path):
    p = write(tmp_path / "bad.json", '[{"text": "a", "label": "pos"},\n {"text": "b", ')
    with pytest.raises(DataError, match=r"bad\.json:2: not valid JSON"):
        read_classification(p)
    q = write(tmp_path / "obj.json", '{"data": 5}')
    with pytest.raises(DataError, match=r"obj\.json: expected a JSON list of objects"):
        read_classification(q)


def test_top_level_list_of_non_objects_named(tmp_path):
    p = write(tmp_path / "l.json", '[{"text": "a", "label": "pos"}, "just text", 3]')
    with pytest.raises(DataError, match=r"l\.json:item 1: item 1 is a str, not a JSON object"):
        read_classification(p)
    r = read_classification(p, on_error="skip")
    assert r.skipped == 2 and len(r) == 1


def squad_file(tmp_path: Path, qas: list[dict], context: str = "Ann ran home.") -> Path:
    data = {
        "version": "1.1",
        "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}],
    }
    return write(tmp_path / "squad.json", json.dumps(data, indent=1))


def test_negative_squad_answer_start_is_an_error_at_file_line(tmp_path):
    qa = {"id": "q1", "question": "Who?", "answers": [{"text": "", "answer_start": -1}]}
    p = squad_file(tmp_path, [qa])
    with pytest.raises(
        DataError, match=r"squad\.json:\d+: answer '' of question 'q1' has answer_start -1, outside"
    ):
        read_squad(p)
    qa["answers"] = [{"text": "home.", "answer_start": 40}]
    with pytest.raises(DataError, match="answer_start 40, outside its context of 13 characters"):
        read_squad(squad_file(tmp_path, [qa]), check_offsets=False)


def test_duplicate_squad_question_ids_are_an_error(tmp_path):
    qa = {"id": "q1", "question": "Who?", "answers": [{"text": "Ann", "answer_start": 0}]}
    p = squad_file(tmp_path, [qa, {**qa, "question": "Who ran?"}])
    with pytest.raises(DataError, match=r"question id 'q1' appears twice"):
        read_squad(p)
    rows = [
        {
            "id": "a",
            "question": "Q",
            "context": "Ann",
            "answers": {"text": ["Ann"], "answer_start": [0]},
        },
        {
            "id": "a",
            "question": "Q2",
            "context": "Ann",
            "answers": {"text": ["Ann"], "answer_start": [0]},
        },
    ]
    r = read_squad(rows, on_error="skip")
    assert len(r) == 1 and r.skipped == 1


def test_eval_label_id_among_names_is_warned_at_file_line(tmp_path, caplog):
    # the training labels are names; an eval file writes "1": read as id 1 (documented), and
    # never silently: a warning names the file, the line and the mapping
    p = write(tmp_path / "eval.csv", "text,label\na,neg\nb,1\n")
    with caplog.at_level(logging.WARNING, logger="gpt2kit"):
        r = read_classification(p, label_names=["neg", "pos"])
    assert [x["label"] for x in r] == [0, 1]
    assert "eval.csv:3: label '1' is not a class name; read as class id 1 = 'pos'" in caplog.text
    with pytest.raises(DataError, match=r"eval2\.csv:2: unknown label '2'"):
        read_classification(
            write(tmp_path / "eval2.csv", "text,label\nb,2\n"), label_names=["neg", "pos"]
        )


# -- model inputs (the model part of "Model and generation inputs") ------------------------
CFG = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32)


def test_python_lists_as_input_ids_are_converted():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(CFG).eval()
    ids = [[1, 2, 3], [4, 5, 6]]
    with torch.no_grad():
        ref = model(torch.tensor(ids)).logits
        torch.testing.assert_close(model(ids).logits, ref, rtol=0, atol=0)
        one = model(torch.tensor([[1, 2, 3]])).logits
        torch.testing.assert_close(model([1, 2, 3]).logits, one, rtol=0, atol=0)
        mask = [[1, 1, 1], [0, 1, 1]]
        torch.testing.assert_close(
            model(ids, attention_mask=mask).logits,
            model(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits,
            rtol=0,
            atol=0,
        )
    with pytest.raises(ValueError, match="input_ids rows have different lengths"):
        model([[1, 2], [3]])
    with pytest.raises(ValueError, match="input_ids must be lists of integer token ids"):
        model([["a", "b"]])
    with pytest.raises(ValueError, match="attention_mask must be a tensor"):
        model(ids, attention_mask="all")
    with pytest.raises(ValueError, match="attention_mask must hold 0"):
        model(ids, attention_mask=[[1, 1, 0.5], [1, 1, 1]])  # refused, not truncated to 0
    with pytest.raises(ValueError, match="attention_mask must be rectangular"):
        model(ids, attention_mask=[[1, 1], [1, 1, 1]])
    # the heads that read input_ids before the backbone convert them too
    from gpt2kit import GPT2ForDocumentClassification, GPT2ForSequenceClassification

    for cls in (GPT2ForSequenceClassification, GPT2ForDocumentClassification):
        head = cls(CFG.__class__(**{**CFG.to_dict(), "num_labels": 2, "pad_token_id": 0})).eval()
        with torch.no_grad():
            torch.testing.assert_close(
                head(ids).logits, head(torch.tensor(ids)).logits, rtol=0, atol=0
            )
    with torch.no_grad():
        torch.testing.assert_close(model([1, 2, 3], attention_mask=[1, 1, 1]).logits, one)


@pytest.mark.parametrize("bad", [2, -1, 0.5])
def test_attention_mask_values_other_than_0_1_are_errors(bad):
    model = GPT2Model(CFG).eval()
    mask = torch.tensor([[1, 1, bad]], dtype=torch.float32 if bad == 0.5 else torch.long)
    with pytest.raises(ValueError, match="attention_mask must hold 0 \\(padding\\) and 1"):
        model(torch.tensor([[1, 2, 3]]), attention_mask=mask)


def test_inputs_embeds_of_wrong_width_names_n_embd():
    model = GPT2Model(CFG).eval()
    with pytest.raises(ValueError, match=r"inputs_embeds must be \[batch, tokens, n_embd=16\]"):
        model(inputs_embeds=torch.zeros(1, 3, 15))
    with pytest.raises(ValueError, match="n_embd=16"):
        model(inputs_embeds=torch.zeros(3, 16))
