"""The task registry (`gpt2kit.tasks.registry`) is the one table of task names: every entry
resolves, aliases map, and every consumer's task list is a view of it (no second table)."""

from __future__ import annotations

import inspect

import pytest

from gpt2kit.tasks import registry


def _tokenizer():
    from gpt2kit.tokenizer import GPT2Tokenizer

    return GPT2Tokenizer.from_pretrained("gpt2")


# one tiny in-memory data set per trainable task (rows the readers accept)
ROWS = {
    "causal-lm": None,  # a text file; built in the test
    "sequence-classification": [{"text": "a good film", "label": 1}, {"text": "bad", "label": 0}],
    "text-classification": [{"text": "a good film", "label": 1}, {"text": "bad", "label": 0}],
    "document-classification": [{"text": "a good film", "label": 1}, {"text": "bad", "label": 0}],
    "token-classification": [{"tokens": ["John", "lives"], "ner_tags": ["B-PER", "O"]}],
    "question-answering": [
        {
            "id": "q1",
            "question": "Who lives?",
            "context": "John lives here.",
            "answers": {"text": ["John"], "answer_start": [0]},
        }
    ],
    "multiple-choice": [{"context": "He sat.", "choices": ["He slept.", "He flew."], "label": 0}],
    "seq2seq": [{"source": "long text here", "target": "short"}],
    "conditional-generation": [{"source": "long text here", "target": "short"}],
}


def test_names_are_unique_and_normalized():
    every = [n for t in registry.TASKS for n in (t.name, *t.aliases)]
    assert len(every) == len(set(every))
    assert all(n == registry.normalize(n) for n in every)


@pytest.mark.parametrize("task", registry.TASKS, ids=lambda t: t.name)
def test_every_entry_resolves(task):
    from gpt2kit.evaluation.metrics import TASK_ALIASES
    from gpt2kit.models.auto import MODEL_CLASSES, model_class
    from gpt2kit.pipelines.base import Pipeline

    assert task.model_class or task.pipeline, "an entry with neither a model nor a pipeline"
    if task.model_class:
        assert task.model_class in MODEL_CLASSES
        assert model_class(task.model_class).__name__ == task.model_class
    for name in task.other_classes:
        assert name in MODEL_CLASSES
    if task.pipeline:
        cls = registry.resolve(task.pipeline)
        assert issubclass(cls, Pipeline) and cls.task == task.name
    if task.serving_pipeline:
        assert registry.BY_NAME[task.serving_pipeline].pipeline is not None
    assert (task.reader is None) == (task.collator is None)
    if task.reader:
        reader = registry.resolve(task.reader)
        assert list(inspect.signature(reader).parameters) == [
            "task",
            "source",
            "tokenizer",
            "options",
        ]
        assert isinstance(registry.resolve(task.collator), type)
    if task.metric:
        assert TASK_ALIASES[task.name] == task.metric
    for endpoint in task.endpoints:
        assert endpoint in ("completions", "score", *registry.ENDPOINT_PIPELINES)


@pytest.mark.parametrize("name", registry.names(reader=True))
def test_reader_returns_the_registered_collator(name, tmp_path):
    from gpt2kit.data.datasets import load_task_data

    task = registry.get(name)
    rows = ROWS[name]
    options = {}
    if rows is None:
        rows = tmp_path / "train.txt"
        rows.write_text("to be or not to be, that is the question\n" * 20)
        options = {"block_size": 8, "out_dir": tmp_path / "shards", "progress": False}
    dataset, collator, info = load_task_data(name, rows, _tokenizer(), **options)
    assert len(dataset) > 0 and info["task"] == name
    assert isinstance(collator, registry.resolve(task.collator))
    batch = collator([dataset[0]])
    assert "input_ids" in batch or "documents" in batch  # DocumentCollator keeps ids as lists


def test_aliases_map():
    assert registry.get("ner").name == "token-classification"
    assert registry.get("QA").name == "question-answering"
    assert registry.get("sentiment_analysis").name == "text-classification"
    assert registry.get("text2text-generation").name == "text2text"
    assert registry.get("embeddings").name == "feature-extraction"
    assert registry.get("lm").name == "causal-lm"
    assert registry.lookup("nope") is None
    with pytest.raises(ValueError, match="unknown task 'nope'; choose one of: causal-lm"):
        registry.get("nope", where="reader")


def test_consumers_read_the_registry():
    from gpt2kit.cli import train as train_cli
    from gpt2kit.data import datasets
    from gpt2kit.evaluation import metrics
    from gpt2kit.models import auto
    from gpt2kit.pipelines import ALIASES, PIPELINES
    from gpt2kit.serve import tasks as serve_tasks

    trainable = registry.names(reader=True)
    assert list(datasets.TASKS) == trainable
    assert list(train_cli.TASKS) == trainable
    assert {t.name: t.model_class for t in registry.TASKS if t.model_class} == auto.TASKS
    for name, cls in PIPELINES.items():  # accepted classes: the registry's, not the pipeline's
        assert cls.model_classes == registry.pipeline_classes(name), name
    assert PIPELINES["multiple-choice"].model_classes == (
        "GPT2ForMultipleChoice",
        "GPT2DoubleHeadsModel",
    )
    assert list(PIPELINES) == registry.names(pipeline=True)
    for t in registry.TASKS:
        for name in (t.name, *t.aliases):
            if t.serving_pipeline:
                assert ALIASES.get(name, name) == t.serving_pipeline
            if t.metric:
                assert metrics.TASK_ALIASES[name] == t.metric
            if t.model_class:
                assert auto.task_class(name).__name__ == t.model_class
    assert set(metrics.TASK_ALIASES.values()) <= {t.metric for t in registry.TASKS}
    assert tuple(t.name for t in registry.TASKS if t.defaults.get("labelled")) == train_cli.LABELLED
    assert train_cli.DEFAULT_LR == {
        "causal-lm": 5e-5,
        "seq2seq": 5e-5,
        "conditional-generation": 1e-4,
    }
    assert serve_tasks._PIPELINE_TASK is registry.ENDPOINT_PIPELINES
    from gpt2kit.adapters.training import TASK_TYPES

    assert TASK_TYPES == {
        "causal-lm": "CAUSAL_LM",
        "sequence-classification": "SEQ_CLS",
        "token-classification": "TOKEN_CLS",
        "question-answering": "QUESTION_ANS",
    }


def test_served_endpoints_per_class():
    """What `supported_tasks` derives from the registry equals the table it replaced."""
    from gpt2kit.serve.tasks import _class_endpoints

    assert _class_endpoints() == {
        "GPT2LMHeadModel": ("completions", "score"),
        "GPT2ForCausalLM": ("completions", "score"),
        "GPT2DoubleHeadsModel": ("completions", "score", "choose"),
        "GPT2ForSequenceClassification": ("classify",),
        "GPT2ForTextClassification": ("classify",),
        "GPT2ForDocumentClassification": ("classify",),
        "GPT2ForTokenClassification": ("tag",),
        "GPT2ForQuestionAnswering": ("answer",),
        "GPT2ForMultipleChoice": ("choose",),
    }


def test_no_task_table_outside_the_registry():
    """No module but the registry spells out a table of task names any more: no literal
    (tuple, list, set, dict keys or values) in `src/gpt2kit` holds three or more of them."""
    import ast
    from pathlib import Path

    import gpt2kit

    known = {n for t in registry.TASKS for n in (t.name, *t.aliases)}
    root = Path(gpt2kit.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                items = [*node.keys, *node.values]
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                items = node.elts
            else:
                continue
            names = {i.value for i in items if isinstance(i, ast.Constant) and i.value in known}
            if len(names) >= 3:
                offenders.append(f"{path.relative_to(root)}:{node.lineno} {sorted(names)}")
    assert offenders == []


def test_one_model_dir_and_one_tokenizer_resolver():
    from gpt2kit import loading
    from gpt2kit.cli import train as train_cli
    from gpt2kit.pipelines import base
    from gpt2kit.serve import app

    assert base.DEFAULT_MODEL_DIR is loading.DEFAULT_MODEL_DIR
    assert app.DEFAULT_MODEL_DIR is loading.DEFAULT_MODEL_DIR
    assert base.load_tokenizer is loading.load_tokenizer
    assert app.load_model is loading.load_model_and_tokenizer
    # the trainer's resolver is the shared one: a folder without tokenizer files -> GPT-2's
    assert train_cli.load_tokenizer("gpt2", from_scratch=True).vocab_size == 50257


def test_registry_and_cli_parser_do_not_import_torch():
    """`gpt2kit --help` builds `--task` choices from the registry without loading torch."""
    import subprocess
    import sys

    code = (
        "import sys, gpt2kit.cli as c; c.build_parser(); "
        "from gpt2kit.tasks import registry; registry.names(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_readers_build_the_collator_the_registry_names(monkeypatch):
    """The registry is the one source of a task's collator: change the entry and the
    reader builds the new class (with the settings its constructor takes)."""
    import dataclasses

    from gpt2kit.data.collators import DataCollatorWithPadding
    from gpt2kit.data.datasets import load_task_data

    task = registry.get("text-classification")
    swapped = dataclasses.replace(task, collator="gpt2kit.data.collators:DataCollatorWithPadding")
    monkeypatch.setitem(registry.__dict__, "BY_NAME", {**registry.BY_NAME, task.name: swapped})
    rows = ROWS["text-classification"]
    _, collator, _ = load_task_data("text-classification", rows, _tokenizer())
    assert type(collator) is DataCollatorWithPadding
    assert collator.pad_token_id == (_tokenizer().pad_token_id or 0)
    with pytest.raises(TypeError, match="pack_length"):  # only the packing collator reads it
        load_task_data("text-classification", rows, _tokenizer(), pack_length=64)
