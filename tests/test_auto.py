"""`AutoModel`: class from `architectures`, class for a task, the registries, label maps."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from gpt2kit.models.auto import (
    MODEL_CLASSES,
    TASKS,
    AutoModelForArchitecture,
    architecture_class,
    model_class,
    task_class,
)
from gpt2kit.models.double_heads import GPT2DoubleHeadsModel
from gpt2kit.models.lm import GPT2ForCausalLM, GPT2LMHeadModel
from gpt2kit.models.multiple_choice import GPT2ForMultipleChoice
from gpt2kit.models.question_answering import GPT2ForQuestionAnswering
from gpt2kit.models.sequence_classification import GPT2ForSequenceClassification
from gpt2kit.models.token_classification import GPT2ForTokenClassification
from gpt2kit.nn.backbone import GPT2Model
from harness import tiny_config

MINE = [
    GPT2Model,
    GPT2LMHeadModel,
    GPT2DoubleHeadsModel,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2ForQuestionAnswering,
    GPT2ForMultipleChoice,
]


@pytest.mark.parametrize("cls", MINE, ids=lambda c: c.__name__)
def test_from_pretrained_picks_saved_class(cls, tmp_path):
    cls(tiny_config()).save_pretrained(tmp_path)
    assert type(AutoModelForArchitecture.from_pretrained(tmp_path)) is cls


def test_causal_lm_alias_and_transformers_names(hf_twin):
    _, folder = hf_twin(tiny_config(), "GPT2ForTokenClassification")
    assert type(AutoModelForArchitecture.from_pretrained(folder)) is GPT2ForTokenClassification
    assert model_class("GPT2ForCausalLM") is GPT2ForCausalLM
    assert (
        task_class("causal-lm") is GPT2ForCausalLM
        and task_class("text_generation") is GPT2ForCausalLM
    )


def test_missing_or_unknown_architectures(tmp_path):
    GPT2Model(tiny_config()).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    del data["architectures"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert (
        type(AutoModelForArchitecture.from_pretrained(tmp_path)) is GPT2LMHeadModel
    )  # documented default
    data["architectures"] = ["GPT2SomethingElse"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="GPT2SomethingElse.*for_task"):
        AutoModelForArchitecture.from_pretrained(tmp_path)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_resolves_to_a_class(task):
    cls = task_class(task)
    assert cls.__name__ == TASKS[task] and TASKS[task] in MODEL_CLASSES


def test_unknown_task_lists_tasks():
    with pytest.raises(ValueError, match="question-answering"):
        task_class("translation-to-klingon")
    with pytest.raises(ValueError, match="known classes"):
        model_class("Nope")


def test_for_task_keeps_backbone_new_head_and_labels_persist(tmp_path, caplog):
    lm = GPT2LMHeadModel(tiny_config())
    lm.save_pretrained(tmp_path / "lm")
    id2label = {0: "O", 1: "B-PER", 2: "I-PER"}
    with caplog.at_level(logging.WARNING, logger="gpt2kit"):
        model = AutoModelForArchitecture.for_task(
            "token-classification", tmp_path / "lm", id2label=id2label
        )
    assert type(model) is GPT2ForTokenClassification and model.classifier.out_features == 3
    assert any("classifier.weight" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(model.transformer.wte.weight, lm.transformer.wte.weight)
    model.save_pretrained(tmp_path / "tagger")
    again = AutoModelForArchitecture.from_pretrained(tmp_path / "tagger")
    assert type(again) is GPT2ForTokenClassification
    assert again.config.id2label == id2label and again.config.label2id == {
        "O": 0,
        "B-PER": 1,
        "I-PER": 2,
    }


def test_from_config():
    cfg = tiny_config(architectures=["GPT2ForQuestionAnswering"])
    assert type(AutoModelForArchitecture.from_config(cfg)) is GPT2ForQuestionAnswering
    assert (
        type(AutoModelForArchitecture.from_config(tiny_config(), task="multiple-choice"))
        is GPT2ForMultipleChoice
    )
    assert architecture_class(tiny_config()) is GPT2LMHeadModel
