"""Pipelines: one call from raw text to task results, for every gpt2kit model variant.

`pipeline(task, model=...)` builds the pipeline of a task; see `PIPELINES` for the tasks
and each class for its inputs, options and outputs.

Example:
    >>> from gpt2kit.pipelines import pipeline
    >>> generator = pipeline("text-generation")      # the embedded Tiny Shakespeare model
    >>> generator("ROMEO:", max_new_tokens=4, seed=0)[0]["generated_text"][:6]
    'ROMEO:'
"""

from __future__ import annotations

from typing import Any

from ..tasks import registry
from .base import DEFAULT_MODEL_DIR, Pipeline, WrongModelError, default_model_path, load_tokenizer
from .feature_extraction import FeatureExtractionPipeline
from .multiple_choice import MultipleChoicePipeline
from .question_answering import QuestionAnsweringPipeline
from .text_classification import DocumentClassificationPipeline, TextClassificationPipeline
from .text_generation import (
    SummarizationPipeline,
    Text2TextGenerationPipeline,
    TextGenerationPipeline,
)
from .token_classification import TokenClassificationPipeline, aggregate_entities
from .zero_shot import ZeroShotChoicePipeline, ZeroShotClassificationPipeline

# Both tables are views of the task registry (`gpt2kit.tasks.registry`): a new pipeline is
# a registry entry naming its class.
PIPELINES: dict[str, type[Pipeline]] = {
    t.name: registry.resolve(t.pipeline) for t in registry.TASKS if t.pipeline
}

# Other names people reach for (those of `transformers`, and gpt2kit's model tasks).
ALIASES: dict[str, str] = {
    name: t.serving_pipeline
    for t in registry.TASKS
    if t.serving_pipeline
    for name in (t.name, *t.aliases)
    if name != t.serving_pipeline
}


def pipeline(
    task: str,
    model: Any = None,
    tokenizer: Any = None,
    device: Any = None,
    dtype: Any = None,
    batch_size: int = 8,
    **task_defaults: Any,
) -> Pipeline:
    """Build the pipeline for `task`.

    Args:
        task: one of `PIPELINES` (or an alias such as `ner`, `sentiment-analysis`).
        model: a folder, a Hub id or a loaded gpt2kit model; default the embedded model
            (text generation, zero-shot, feature extraction only).
        tokenizer: a `GPT2Tokenizer` or where to load one; default the model folder's
            tokenizer files, else the shipped GPT-2 tokenizer.
        device: e.g. `"cpu"`, `"cuda"`.
        dtype: e.g. `torch.bfloat16` or `"bfloat16"`.
        batch_size: inputs per forward pass (lists and iterators are fed in batches).
        **task_defaults: options every call uses unless it overrides them
            (`max_new_tokens=40`, `top_k=None`, `aggregation_strategy="simple"`, ...).

    Raises:
        ValueError: unknown task, or a model of a class the task cannot use
            (`WrongModelError`, naming the classes it needs).

    Example:
        >>> zero_shot = pipeline("zero-shot-classification")
        >>> zero_shot("I love thee", candidate_labels=["love", "war"])["labels"][0] in ("love", "war")
        True
    """
    key = registry.normalize(task)
    key = ALIASES.get(key, key)
    if key not in PIPELINES:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(PIPELINES)}")
    return PIPELINES[key](
        model, tokenizer, device=device, dtype=dtype, batch_size=batch_size, **task_defaults
    )


__all__ = [
    "ALIASES",
    "DEFAULT_MODEL_DIR",
    "PIPELINES",
    "DocumentClassificationPipeline",
    "FeatureExtractionPipeline",
    "MultipleChoicePipeline",
    "Pipeline",
    "QuestionAnsweringPipeline",
    "SummarizationPipeline",
    "Text2TextGenerationPipeline",
    "TextClassificationPipeline",
    "TextGenerationPipeline",
    "TokenClassificationPipeline",
    "WrongModelError",
    "ZeroShotChoicePipeline",
    "ZeroShotClassificationPipeline",
    "aggregate_entities",
    "default_model_path",
    "load_tokenizer",
    "pipeline",
]
