"""gpt2kit: one GPT-2 backbone, every task head, Hugging Face checkpoints both ways.

Names are imported lazily (PEP 562): `import gpt2kit`, the tokenizer and `gpt2kit --help`
do not pay for importing torch until a model is touched.

Example:
    >>> import gpt2kit
    >>> cfg = gpt2kit.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100)
    >>> gpt2kit.GPT2LMHeadModel(cfg).num_parameters()
    61440
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # config and files
    "GPT2Config": "config",
    "ConfigError": "config",
    "CheckpointError": "checkpoint",
    "LoadReport": "checkpoint",
    # models
    "GPT2PreTrainedModel": "models.base",
    "GPT2Model": "models.backbone",
    "KVCache": "models.cache",
    "GPT2LMHeadModel": "models.lm",
    "GPT2ForCausalLM": "models.lm",
    "ScoreOutput": "models.lm",
    "GPT2DoubleHeadsModel": "models.double_heads",
    "GPT2ForMultipleChoice": "models.multiple_choice",
    "GPT2ForSequenceClassification": "models.sequence_classification",
    "GPT2ForTextClassification": "models.text_classification",
    "GPT2ForDocumentClassification": "models.document_classification",
    "GPT2ForTokenClassification": "models.token_classification",
    "GPT2ForQuestionAnswering": "models.question_answering",
    "GPT2ForSequenceToSequence": "models.seq2seq",
    "GPT2ForConditionalGeneration": "models.conditional_generation",
    "EncoderDecoderModel": "models.conditional_generation",
    "AutoConfig": "models.auto",
    "AutoModel": "models.auto",
    "AutoModelForArchitecture": "models.auto",
    "AutoModelForCausalLM": "models.auto",
    "AutoModelForSequenceClassification": "models.auto",
    "AutoModelForTokenClassification": "models.auto",
    "AutoModelForQuestionAnswering": "models.auto",
    "AutoModelForMultipleChoice": "models.auto",
    "AutoModelForSeq2SeqLM": "models.auto",
    # outputs
    "ModelOutput": "models.outputs",
    "BaseModelOutput": "models.outputs",
    "CausalLMOutput": "models.outputs",
    "SequenceClassifierOutput": "models.outputs",
    "TokenClassifierOutput": "models.outputs",
    "QuestionAnsweringModelOutput": "models.outputs",
    "MultipleChoiceModelOutput": "models.outputs",
    "DoubleHeadsModelOutput": "models.outputs",
    "TextClassifierOutput": "models.outputs",
    "DocumentClassifierOutput": "models.outputs",
    "Seq2SeqLMOutput": "models.outputs",
    # tokenizer
    "GPT2Tokenizer": "tokenizer",
    "BatchEncoding": "tokenizer",
    "GPT2TokenizerFast": "tokenizer",
    "AutoTokenizer": "tokenizer",
    # generation
    "generate": "generation",
    "stream_generate": "generation",
    "GenerationConfig": "generation",
    "GenerateOutput": "generation",
    "TextIteratorStreamer": "generation",
    "StoppingCriteria": "generation",
    "StoppingCriteriaList": "generation",
    "MaxTimeCriteria": "generation",
    # data, training, evaluation
    "load_task_data": "data",
    "DataError": "data",
    "BlockDataset": "data",
    "tokenize_to_shards": "data",
    "Trainer": "training",
    "TrainingArguments": "training",
    "compute_metrics": "evaluation",
    "format_table": "evaluation",
    # adapters
    "LoraConfig": "adapters",
    # pipelines
    "pipeline": "pipelines",
    "Pipeline": "pipelines",
    "WrongModelError": "pipelines",
    # weight-only quantization
    "QuantizationConfig": "quantization",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpt2kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
