"""GPT-2 byte-level BPE tokenizer, offline by default and interchangeable with Hugging Face's.

Why this package exists: every gpt2kit head (LM, classification, QA, tagging) needs the
same tokenizer, it must work with no network (the GPT-2 vocabulary ships inside the
package under ``assets/gpt2``), and its saved folders must load back in
``transformers.AutoTokenizer``. It is a thin layer over the Rust ``tokenizers`` library,
which does the byte-level BPE *and* the padding, truncation, pairs and overflow windows,
exactly as in ``transformers.GPT2TokenizerFast``. ``torch`` is imported only when
tensors are asked for.

Layout (one concern per module):

* :mod:`.files` - shipped vocabulary, folders, the Hub, saving;
* :mod:`.specials` - named special tokens, added tokens, special-token masks;
* :mod:`.encode` - ``__call__``/``encode``/``tokenize``: argument and input checks;
* :mod:`.batching` - padding/truncation options, the Rust worker, ``pad``, ``BatchEncoding``;
* :mod:`.decode` - ``decode``/``batch_decode`` and the id <-> token maps;
* :mod:`.chat` - ``apply_chat_template`` (sandboxed Jinja);
* :mod:`.gpt2` - the classes: ``GPT2Tokenizer`` (gpt2kit's conventions),
  ``GPT2TokenizerFast`` and ``AutoTokenizer`` (``transformers``' defaults).

Pipeline (the same as Hugging Face's ``gpt2`` ``tokenizer.json``): ``models.BPE`` over
the 50257-entry vocabulary and 50000 merges; ``pre_tokenizers.ByteLevel(use_regex=True)``
whose regex is ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``;
``decoders.ByteLevel()``; ``processors.ByteLevel(trim_offsets=...)`` (adds no tokens).

Agreement with OpenAI's encoder: the reference is tiktoken's ``gpt2`` encoding, whose
pattern has the same alternatives (also case sensitive, so ``"I'M"`` splits as ``I``,
``'``, ``M``). We found no difference between the two: probes of every non-surrogate code
point in letter, digit, apostrophe and whitespace contexts, 200k random strings and
26 MB of real text (11.8M tokens) all gave identical ids; ``tests/test_tokenizer.py``
keeps checking this with Hypothesis.

``<|endoftext|>`` inside text: by default the literal string becomes id 50256, exactly
like Hugging Face's GPT-2 tokenizer and tiktoken with ``allowed_special="all"``. That is
what you want for prepared training text, but untrusted input (user prompts, scraped
pages) can then inject a document boundary. Pass ``split_special_tokens=True`` (to the
constructor, or per call) to encode special tokens as ordinary text.

Example:
    >>> from gpt2kit.tokenizer import GPT2Tokenizer
    >>> tok = GPT2Tokenizer.from_pretrained("gpt2")
    >>> tok.encode("Hello world")
    [15496, 995]
    >>> tok.decode([15496, 995])
    'Hello world'
"""

from __future__ import annotations

from .batching import BatchEncoding
from .files import ASSETS_DIR, EOT, OPENAI_GPT2_NAMES
from .gpt2 import AutoTokenizer, GPT2Tokenizer, GPT2TokenizerFast

__all__ = [
    "ASSETS_DIR",
    "EOT",
    "OPENAI_GPT2_NAMES",
    "AutoTokenizer",
    "BatchEncoding",
    "GPT2Tokenizer",
    "GPT2TokenizerFast",
]
