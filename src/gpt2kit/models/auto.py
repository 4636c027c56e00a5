"""Auto classes: `transformers`' names (`AutoModel`, `AutoModelForCausalLM`, ...), the class
chosen from `config.json` (`AutoModelForArchitecture`), and the task registry.

`transformers`' Auto classes pick the class from the *task* (`AutoModelForCausalLM` is
`GPT2LMHeadModel` whatever `architectures` says; `AutoModel` is the bare `GPT2Model`), and
so do ours. Picking the class a checkpoint was saved as is `AutoModelForArchitecture`.

Two tables, both plain dicts so pipelines and the CLI read them too:

- `MODEL_CLASSES`: class name -> module that defines it. Holds every gpt2kit class and
  every name `transformers` writes to `config.json`'s `architectures` for GPT-2.
  Modules are imported only when their class is asked for, so a class whose module is
  not installed (or not written yet) costs nothing until used.
- `TASKS`: task name -> class name (`text-generation`, `question-answering`, ...), a view
  of the task registry (`gpt2kit.tasks.registry`).

Rules of `AutoModelForArchitecture.from_pretrained`: the first name in `architectures` that we know picks
the class; a checkpoint without `architectures` loads as `GPT2LMHeadModel` (any GPT-2
checkpoint has the embedding the LM head is tied to, so nothing is newly initialized);
a name we do not know is an error that lists the known ones.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from ..checkpoint import verify_checkpoint as _verify_checkpoint
from ..config import GPT2Config
from ..tasks import registry

MODEL_CLASSES: dict[str, str] = {
    "GPT2Model": "gpt2kit.nn.backbone",
    "GPT2LMHeadModel": "gpt2kit.models.lm",
    "GPT2ForCausalLM": "gpt2kit.models.lm",
    "GPT2DoubleHeadsModel": "gpt2kit.models.double_heads",
    "GPT2ForSequenceClassification": "gpt2kit.models.sequence_classification",
    "GPT2ForTokenClassification": "gpt2kit.models.token_classification",
    "GPT2ForQuestionAnswering": "gpt2kit.models.question_answering",
    "GPT2ForMultipleChoice": "gpt2kit.models.multiple_choice",
    "GPT2ForTextClassification": "gpt2kit.models.text_classification",
    "GPT2ForDocumentClassification": "gpt2kit.models.document_classification",
    "GPT2ForSequenceToSequence": "gpt2kit.models.seq2seq",
    "GPT2ForConditionalGeneration": "gpt2kit.models.conditional_generation",
}

# task name -> class name, read from the task registry (`gpt2kit.tasks.registry`)
TASKS: dict[str, str] = {t.name: t.model_class for t in registry.TASKS if t.model_class}

DEFAULT_ARCHITECTURE = "GPT2LMHeadModel"


def model_class(name: str) -> type:
    """The class called `name` (a key of `MODEL_CLASSES`), imported on first use.

    Example:
        >>> model_class("GPT2ForQuestionAnswering").__name__
        'GPT2ForQuestionAnswering'
    """
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {name!r}; known classes: {', '.join(MODEL_CLASSES)}")
    module_name = MODEL_CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise ValueError(
            f"{name} is registered but its module {module_name} is not available in this "
            "gpt2kit installation; upgrade gpt2kit or pick another class"
        ) from err
    return getattr(module, name)


def task_class(task: str) -> type:
    """The class serving `task` (a key of `TASKS`; `_` and `-` are interchangeable).

    Example:
        >>> task_class("token_classification").__name__
        'GPT2ForTokenClassification'
    """
    entry = registry.get(task, where="model_class")
    return model_class(entry.model_class)


def architecture_class(config: GPT2Config) -> type:
    """The class `config.architectures` names (see the module rules)."""
    names = config.architectures or []
    if not names:
        return model_class(DEFAULT_ARCHITECTURE)
    for name in names:
        if name in MODEL_CLASSES:
            return model_class(name)
    raise ValueError(
        f"config.json names architectures {names}, none of which gpt2kit knows; known: "
        f"{', '.join(MODEL_CLASSES)}. Load with a class directly (e.g. GPT2LMHeadModel."
        "from_pretrained) or with AutoModelForArchitecture.for_task(task, path)"
    )


def verify_checkpoint(folder: str | os.PathLike, config: GPT2Config | None = None) -> list[str]:
    """What is wrong with the checkpoint in `folder`, one sentence per problem (empty: it
    loads): `gpt2kit.checkpoint.verify_checkpoint` against the class `config.json` names
    (the checkpoint layer takes the class; it never imports the models)."""
    return _verify_checkpoint(folder, config, model_class=architecture_class)


class AutoModelForArchitecture:
    """Load the gpt2kit class a checkpoint's `config.json` names (`architectures`).

    Example:
        >>> import tempfile
        >>> from gpt2kit.models.question_answering import GPT2ForQuestionAnswering
        >>> folder = tempfile.mkdtemp()
        >>> _ = GPT2ForQuestionAnswering(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(folder)
        >>> type(AutoModelForArchitecture.from_pretrained(folder)).__name__
        'GPT2ForQuestionAnswering'
        >>> type(AutoModelForArchitecture.for_task("token-classification", folder, num_labels=3)).__name__
        'GPT2ForTokenClassification'
    """

    @staticmethod
    def from_pretrained(name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
        """Load the class `config.json`'s `architectures` names; `kwargs` as the class's
        `from_pretrained` (dtype, device, Hub options, config overrides such as `num_labels`)."""
        config = kwargs.get("config")
        if config is None:
            hub = {k: kwargs[k] for k in _HUB_KEYWORDS if k in kwargs}
            config = GPT2Config.from_pretrained(name_or_path, **hub)
        return architecture_class(config).from_pretrained(name_or_path, **kwargs)

    @staticmethod
    def for_task(task: str, name_or_path: str | os.PathLike, **overrides: Any) -> Any:
        """Load any GPT-2 checkpoint as the model for `task`: the backbone is kept, a head
        the checkpoint lacks is newly initialized (and logged). `overrides` go to
        `from_pretrained` (e.g. `num_labels=3`, `id2label={...}`, `dtype=...`)."""
        return task_class(task).from_pretrained(name_or_path, **overrides)

    @staticmethod
    def from_config(config: GPT2Config, task: str | None = None, **kwargs: Any) -> Any:
        """A randomly initialized model for `task`, or for `config.architectures` when no task."""
        cls = task_class(task) if task is not None else architecture_class(config)
        return cls.from_config(config, **kwargs)


_HUB_KEYWORDS = ("revision", "token", "cache_dir", "local_files_only", "force_download")


class _AutoTaskModel:
    """`transformers`' Auto class for one task: always the same gpt2kit class."""

    class_name = ""

    def __init__(self) -> None:
        raise OSError(
            f"{type(self).__name__} is not built directly; use "
            f"{type(self).__name__}.from_pretrained(path) or .from_config(config)"
        )

    @classmethod
    def model_class(cls) -> type:
        return model_class(cls.class_name)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any
    ) -> Any:
        """As `transformers`: `<class>.from_pretrained(path, **kwargs)`, e.g. `num_labels=3`."""
        return cls.model_class().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def from_config(cls, config: GPT2Config, **kwargs: Any) -> Any:
        """A randomly initialized model (kwargs: `dtype`/`torch_dtype`, `attn_implementation`)."""
        return cls.model_class().from_config(config, **kwargs)


class AutoModel(_AutoTaskModel):
    """`GPT2Model`, the bare backbone (as `transformers.AutoModel`).

    `for_task` (not in `transformers`) is `AutoModelForArchitecture.for_task`.
    """

    class_name = "GPT2Model"
    for_task = staticmethod(AutoModelForArchitecture.for_task)


class AutoModelForCausalLM(_AutoTaskModel):
    """`GPT2LMHeadModel`."""

    class_name = "GPT2LMHeadModel"


class AutoModelForSequenceClassification(_AutoTaskModel):
    """`GPT2ForSequenceClassification`."""

    class_name = "GPT2ForSequenceClassification"


class AutoModelForTokenClassification(_AutoTaskModel):
    """`GPT2ForTokenClassification`."""

    class_name = "GPT2ForTokenClassification"


class AutoModelForQuestionAnswering(_AutoTaskModel):
    """`GPT2ForQuestionAnswering`."""

    class_name = "GPT2ForQuestionAnswering"


class AutoModelForMultipleChoice(_AutoTaskModel):
    """`GPT2ForMultipleChoice` (`transformers` has no GPT-2 multiple-choice class)."""

    class_name = "GPT2ForMultipleChoice"


class AutoModelForSeq2SeqLM(_AutoTaskModel):
    """`GPT2ForConditionalGeneration`: a GPT-2 encoder and decoder (`EncoderDecoderModel`)."""

    class_name = "GPT2ForConditionalGeneration"


class AutoConfig:
    """`GPT2Config` under `transformers`' name.

    Example:
        >>> AutoConfig.for_model("gpt2", n_layer=2).n_layer
        2
    """

    def __init__(self) -> None:
        raise OSError("AutoConfig is not built directly; use AutoConfig.from_pretrained(path)")

    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> GPT2Config:
        """`config.json` of a folder or Hub id; keywords as `GPT2Config.from_pretrained`."""
        return GPT2Config.from_pretrained(pretrained_model_name_or_path, **kwargs)

    @staticmethod
    def for_model(model_type: str, **kwargs: Any) -> GPT2Config:
        """A config for `model_type` (`"gpt2"` only) with `kwargs` as fields."""
        if model_type != "gpt2":
            raise ValueError(f"gpt2kit builds GPT-2 models only; got model_type {model_type!r}")
        return GPT2Config(**kwargs)
