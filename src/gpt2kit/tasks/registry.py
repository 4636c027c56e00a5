"""The task registry: every task gpt2kit knows, in one table.

A task is a name people type (`--task token-classification`, `pipeline("ner")`, a serve
endpoint). Before this module each layer kept its own table of names (the Auto classes,
the pipelines and their aliases, the data loaders, the training CLI, the metrics, the
server); they drifted. Now each of them *reads* this table, so a new task is one entry here
plus the code it points to.

The registry sits low in the layers (it imports nothing from gpt2kit): it names classes
and functions by dotted path (`"gpt2kit.models.lm:GPT2ForCausalLM"`), resolved on use by
`resolve`, so referencing a pipeline from here adds no import edge and no cycle.

Fields of a `Task`:

- `name`, `aliases`: the canonical name and other names accepted for it (`ner`, `qa`).
- `model_class`: the class name (a key of `gpt2kit.models.auto.MODEL_CLASSES`) the
  Auto classes load for the task; `None` for tasks that run on another task's model.
- `pipeline`: dotted path of the pipeline class that owns this name; `pipeline_task`: the
  name of the pipeline that serves the task when it is not its own (`seq2seq` runs the
  `text2text` pipeline).
- `reader`, `collator`: the data loader (`gpt2kit.data.datasets`) that reads and featurizes
  the task's data file and the collator class it returns by default; tasks with a reader
  are the ones `gpt2kit train` / `load_task_data` accept.
- `metric`: the metric family `gpt2kit.evaluation.metrics.compute_metrics` uses.
- `other_classes`: further model classes the task runs on (`GPT2LMHeadModel` beside
  `GPT2ForCausalLM`); a class accepts its subclasses too.
- `endpoints`: server endpoints a model of `model_class` (or of one of `other_classes`)
  serves.
- The model classes a pipeline accepts are `model_class` and `other_classes` of every task
  it serves (`pipeline_classes`), so a pipeline lists none of its own.
- `defaults`: per-task defaults (`learning_rate`, `labelled` for `--label-names`,
  `peft_task_type` for the adapter config `train --lora` writes).

Example:
    >>> get("ner").name, get("token_classification").model_class
    ('token-classification', 'GPT2ForTokenClassification')
    >>> names(reader=True)[:2]
    ['causal-lm', 'sequence-classification']
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_P = "gpt2kit.pipelines."
_D = "gpt2kit.data.datasets:"


@dataclass(frozen=True)
class Task:
    """One task; see the module docstring for what each field is read by."""

    name: str
    aliases: tuple[str, ...] = ()
    model_class: str | None = None
    pipeline: str | None = None
    pipeline_task: str | None = None
    reader: str | None = None
    collator: str | None = None
    metric: str | None = None
    endpoints: tuple[str, ...] = ()
    other_classes: tuple[str, ...] = ()
    defaults: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    @property
    def serving_pipeline(self) -> str | None:
        """Name of the pipeline task that runs this task (itself, `pipeline_task`, or None)."""
        return self.pipeline_task or (self.name if self.pipeline else None)


def _d(**values: Any) -> MappingProxyType:
    return MappingProxyType(values)


_LM_ENDPOINTS = ("completions", "score")
_CLASSIFY = ("classify",)

# Order matters: it is the order of every list derived from the registry (help texts,
# error messages, `gpt2kit train --task` choices).
TASKS: tuple[Task, ...] = (
    # Names with no `reader` are inference-only: `gpt2kit train` does not offer them.
    Task(
        "text-generation",
        model_class="GPT2ForCausalLM",
        pipeline=_P + "text_generation:TextGenerationPipeline",
        metric="causal-lm",
        endpoints=_LM_ENDPOINTS,
        other_classes=("GPT2LMHeadModel", "GPT2DoubleHeadsModel"),
    ),
    Task(
        "summarization",
        model_class="GPT2ForSequenceToSequence",
        pipeline=_P + "text_generation:SummarizationPipeline",
        metric="generation",
        other_classes=("GPT2ForConditionalGeneration",),
    ),
    Task(
        "text2text",
        aliases=("text2text-generation",),
        model_class="GPT2ForSequenceToSequence",
        pipeline=_P + "text_generation:Text2TextGenerationPipeline",
        metric="generation",
    ),
    Task(
        "causal-lm",
        aliases=("lm",),
        model_class="GPT2ForCausalLM",
        pipeline_task="text-generation",
        reader=_D + "_causal_lm",
        collator="gpt2kit.data.collators:DataCollatorWithPadding",
        metric="causal-lm",
        endpoints=_LM_ENDPOINTS,
        other_classes=("GPT2LMHeadModel",),
        defaults=_d(learning_rate=5e-5, peft_task_type="CAUSAL_LM"),
    ),
    Task(
        "sequence-classification",
        model_class="GPT2ForSequenceClassification",
        pipeline_task="text-classification",
        reader=_D + "_classification",
        collator="gpt2kit.data.collators:DataCollatorWithPadding",
        metric="classification",
        endpoints=_CLASSIFY,
        defaults=_d(labelled=True, peft_task_type="SEQ_CLS"),
    ),
    Task(
        "text-classification",
        aliases=("sentiment-analysis",),
        model_class="GPT2ForTextClassification",
        pipeline=_P + "text_classification:TextClassificationPipeline",
        reader=_D + "_classification",
        collator="gpt2kit.data.collators:PackedTextCollator",
        metric="classification",
        endpoints=_CLASSIFY,
        defaults=_d(labelled=True),
    ),
    Task(
        "document-classification",
        model_class="GPT2ForDocumentClassification",
        pipeline=_P + "text_classification:DocumentClassificationPipeline",
        reader=_D + "_classification",
        collator="gpt2kit.data.collators:DocumentCollator",
        metric="classification",
        endpoints=_CLASSIFY,
        defaults=_d(labelled=True),
    ),
    Task(
        "token-classification",
        aliases=("ner",),
        model_class="GPT2ForTokenClassification",
        pipeline=_P + "token_classification:TokenClassificationPipeline",
        reader=_D + "_token_classification",
        collator="gpt2kit.tasks.token_alignment:TokenWindowCollator",
        metric="token-classification",
        endpoints=("tag",),
        defaults=_d(labelled=True, peft_task_type="TOKEN_CLS"),
    ),
    Task(
        "question-answering",
        aliases=("qa",),
        model_class="GPT2ForQuestionAnswering",
        pipeline=_P + "question_answering:QuestionAnsweringPipeline",
        reader=_D + "_question_answering",
        collator="gpt2kit.data.collators:QACollator",
        metric="question-answering",
        endpoints=("answer",),
        defaults=_d(peft_task_type="QUESTION_ANS"),
    ),
    Task(
        "multiple-choice",
        model_class="GPT2ForMultipleChoice",
        pipeline=_P + "multiple_choice:MultipleChoicePipeline",
        reader=_D + "_multiple_choice",
        collator="gpt2kit.tasks.multiple_choice:MultipleChoiceCollator",
        metric="multiple-choice",
        endpoints=("choose",),
    ),
    Task(
        "seq2seq",
        model_class="GPT2ForSequenceToSequence",
        pipeline_task="text2text",
        reader=_D + "_seq2seq",
        collator="gpt2kit.tasks.seq2seq:Seq2SeqCollator",
        metric="generation",
        defaults=_d(learning_rate=5e-5),
    ),
    Task(
        "conditional-generation",
        model_class="GPT2ForConditionalGeneration",
        pipeline_task="text2text",
        reader=_D + "_seq2seq",
        collator="gpt2kit.tasks.seq2seq:EncoderDecoderCollator",
        metric="generation",
        defaults=_d(learning_rate=1e-4),
    ),
    Task(
        "double-heads",
        model_class="GPT2DoubleHeadsModel",
        pipeline_task="multiple-choice",
        metric="multiple-choice",
        endpoints=(*_LM_ENDPOINTS, "choose"),
    ),
    Task(
        "zero-shot-classification",
        pipeline=_P + "zero_shot:ZeroShotClassificationPipeline",
        other_classes=("GPT2LMHeadModel",),
    ),
    Task(
        "zero-shot-choice",
        pipeline=_P + "zero_shot:ZeroShotChoicePipeline",
        other_classes=("GPT2LMHeadModel",),
    ),
    Task(
        "feature-extraction",
        aliases=("embeddings",),
        model_class="GPT2Model",
        pipeline=_P + "feature_extraction:FeatureExtractionPipeline",
    ),
)

BY_NAME: MappingProxyType = MappingProxyType({t.name: t for t in TASKS})
ALIASES: MappingProxyType = MappingProxyType({a: t.name for t in TASKS for a in t.aliases})

# Server endpoint -> the pipeline task that runs it (a classifier of any of the three
# classification classes is served by the text-classification pipeline).
ENDPOINT_PIPELINES: MappingProxyType = MappingProxyType(
    {
        "classify": "text-classification",
        "tag": "token-classification",
        "answer": "question-answering",
        "choose": "multiple-choice",
    }
)
# Metric families compute_metrics also accepts by their own name.
METRIC_FAMILIES = ("classification", "generation")


def normalize(name: str) -> str:
    """`name` as the registry spells names: stripped, lower case, `_` as `-`."""
    return name.strip().lower().replace("_", "-")


def lookup(name: str) -> Task | None:
    """The task called `name` or one of its aliases, else None."""
    key = normalize(name)
    return BY_NAME.get(ALIASES.get(key, key))


def get(name: str, *, where: str | None = None) -> Task:
    """The task called `name` (or an alias); an unknown name is a `ValueError` listing the
    names (those with a `where` field set, e.g. `where="reader"`)."""
    task = lookup(name)
    if task is None or (where is not None and getattr(task, where) is None):
        known = names(**({where: True} if where else {}))
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(known)}")
    return task


def names(**having: bool) -> list[str]:
    """Canonical task names in registry order, only those whose given fields are set
    (`names(reader=True)`: the trainable tasks; `names(pipeline=True)`: the pipelines)."""
    return [
        t.name for t in TASKS if all((getattr(t, f) is not None) == v for f, v in having.items())
    ]


def pipeline_classes(pipeline: str) -> tuple[str, ...]:
    """Names of the model classes the pipeline task `pipeline` accepts: `model_class` and
    `other_classes` of every task it serves (itself, and those whose `pipeline_task` it
    is), in registry order.

    Example:
        >>> pipeline_classes("multiple-choice")
        ('GPT2ForMultipleChoice', 'GPT2DoubleHeadsModel')
    """
    found = [
        name
        for t in TASKS
        if t.serving_pipeline == pipeline
        for name in (t.model_class, *t.other_classes)
        if name
    ]
    return tuple(dict.fromkeys(found))


def resolve(path: str) -> Any:
    """Import `"package.module:attribute"` and return the attribute."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


__all__ = [
    "ALIASES",
    "BY_NAME",
    "ENDPOINT_PIPELINES",
    "METRIC_FAMILIES",
    "TASKS",
    "Task",
    "get",
    "lookup",
    "names",
    "normalize",
    "pipeline_classes",
    "resolve",
]
