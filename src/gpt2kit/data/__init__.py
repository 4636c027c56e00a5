"""Task data: readers, token shards for large LM corpora, collators, `load_task_data`.

Start at `load_task_data(task, path, tokenizer, **options) -> (dataset, collator, info)`
(`gpt2kit.data.datasets`, whose docstring lists the tasks, file layouts and options).

Example:
    >>> from gpt2kit.data import DataCollatorWithPadding
    >>> DataCollatorWithPadding(pad_token_id=0)([{"input_ids": [1, 2]}, {"input_ids": [3]}])["input_ids"].tolist()
    [[1, 2], [3, 0]]
"""

from .collators import (
    DataCollatorWithPadding,
    DocumentCollator,
    PackedTextCollator,
    QACollator,
    TokenClassificationCollator,
)
from .datasets import TASKS, QADecoder, TaskDataset, as_metric_options, load_task_data
from .readers import (
    DataError,
    Records,
    convert_tags,
    read_classification,
    read_conll,
    read_multiple_choice,
    read_seq2seq,
    read_squad,
    read_text,
)
from .text_shards import BlockDataset, TokenShards, tokenize_to_shards, tokenizer_fingerprint

__all__ = [
    "TASKS",
    "BlockDataset",
    "DataCollatorWithPadding",
    "DataError",
    "DocumentCollator",
    "PackedTextCollator",
    "QACollator",
    "QADecoder",
    "Records",
    "TaskDataset",
    "TokenClassificationCollator",
    "TokenShards",
    "as_metric_options",
    "convert_tags",
    "load_task_data",
    "read_classification",
    "read_conll",
    "read_multiple_choice",
    "read_seq2seq",
    "read_squad",
    "read_text",
    "tokenize_to_shards",
    "tokenizer_fingerprint",
]
