"""Streaming and stop strings with the real GPT-2 tokenizer.

A tiny model with GPT-2's vocabulary plus a processor that forces a chosen token
sequence make the generated text known in advance: emoji and CJK characters split
across tokens, stop strings split across tokens.
"""

from __future__ import annotations

import threading

import pytest
import torch

from gpt2kit import GPT2LMHeadModel
from gpt2kit.generation import (
    IncrementalDecoder,
    TextIteratorStreamer,
    TextStreamer,
    generate,
    stream_generate,
)
from gpt2kit.tokenizer import GPT2Tokenizer
from harness import tiny_config

TEXT = "Hi 😀 你好! stop here. 🎉 end"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops on a loaded machine: extra threads only spin
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_pretrained("gpt2")


@pytest.fixture(scope="module")
def model():
    cfg = tiny_config(vocab_size=50257, bos_token_id=50256, eos_token_id=50256, n_positions=128)
    return GPT2LMHeadModel(cfg).eval()


class Force:
    """Logits processor forcing `tokens` after a prompt of `prompt_length` tokens."""

    def __init__(self, tokens: list[int], prompt_length: int):
        self.tokens, self.T = tokens, prompt_length

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        i = ids.shape[1] - self.T
        out = torch.full_like(scores, -float("inf"))
        out[:, self.tokens[min(i, len(self.tokens) - 1)]] = 0.0
        return out


def test_text_splits_characters_across_tokens(tok):
    ids = tok.encode(TEXT)
    singles = [tok.decode([i]) for i in ids]
    assert any("\ufffd" in s for s in singles)  # the premise: some tokens are half a character
    assert tok.decode(ids) == TEXT


def test_stream_never_emits_half_a_character(tok, model):
    forced = tok.encode(TEXT) + [tok.eos_token_id]
    prompt = tok.encode("Say:")
    pieces = list(
        stream_generate(
            model,
            tok,
            prompt,
            max_new_tokens=len(forced) + 2,
            logits_processor=[Force(forced, len(prompt))],
        )
    )
    assert "".join(pieces) == TEXT  # EOS stopped it and is not part of the text
    assert len(pieces) > 5
    assert all("\ufffd" not in p for p in pieces)


def test_incremental_decoder_holds_back_partial_bytes(tok):
    d = IncrementalDecoder(tok)
    out = [d.push(i) for i in tok.encode("😀你")]
    assert "".join(out) == "😀你" and all("\ufffd" not in p for p in out)
    assert out.count("") >= 2  # held back while a character was incomplete


@pytest.mark.parametrize("stop", ["stop here", "! st", "你好", "re. 🎉"])
def test_stop_strings_spanning_tokens(tok, model, stop):
    forced = tok.encode(TEXT)
    prompt = tok.encode("Say:")
    kw = dict(
        max_new_tokens=len(forced), logits_processor=[Force(forced, len(prompt))], eos_token_id=None
    )
    text = "".join(stream_generate(model, tok, prompt, stop_strings=[stop], **kw))
    assert text == TEXT[: TEXT.index(stop) + len(stop)]
    text = "".join(
        stream_generate(model, tok, prompt, stop_strings=stop, include_stop_string=False, **kw)
    )
    assert text == TEXT[: TEXT.index(stop)]

    # generate() stops on the token that completes the stop string, as transformers does.
    ids = generate(model, torch.tensor([prompt]), tokenizer=tok, stop_strings=[stop], **kw)
    new = ids[0, len(prompt) :].tolist()
    assert tok.decode(new).startswith(TEXT[: TEXT.index(stop) + len(stop)])
    assert not tok.decode(new[:-1]).startswith(TEXT[: TEXT.index(stop) + len(stop)])


def test_stop_string_matches_transformers_criterion(tok, model):
    import transformers
    from transformers.generation.stopping_criteria import StopStringCriteria

    hf_tok = transformers.GPT2TokenizerFast(
        vocab_file=None,
        merges_file=None,
        tokenizer_object=tok.backend_tokenizer,
        eos_token="<|endoftext|>",
    )
    ids = tok.encode(TEXT)
    crit = StopStringCriteria(hf_tok, ["stop here", "你好"])
    from gpt2kit.generation import StopStringMatcher

    ours = StopStringMatcher(["stop here", "你好"], tok)
    for n in range(1, len(ids) + 1):
        theirs = bool(crit(torch.tensor([ids[:n]]), None)[0])
        assert ours.hit(ids[:n]) == theirs, n


def test_text_streamer_and_iterator_streamer(tok, model):
    forced = tok.encode(TEXT) + [tok.eos_token_id]
    prompt = torch.tensor([tok.encode("Say:")])
    kw = dict(max_new_tokens=len(forced), logits_processor=[Force(forced, prompt.shape[1])])

    pieces: list[str] = []
    out = generate(model, prompt, streamer=TextStreamer(tok, callback=pieces.append), **kw)
    assert "".join(pieces) == TEXT and all("\ufffd" not in p for p in pieces)
    assert tok.decode(out[0, prompt.shape[1] : -1].tolist()) == TEXT

    streamer = TextIteratorStreamer(tok, timeout=60)
    thread = threading.Thread(
        target=generate, args=(model, prompt), kwargs=dict(streamer=streamer, **kw)
    )
    thread.start()
    text = "".join(streamer)
    thread.join()
    assert text == TEXT


def test_stream_generate_can_stop_early(tok, model):
    it = stream_generate(
        model, tok, "Hello", max_new_tokens=50, eos_token_id=None, do_sample=True, seed=0
    )
    first = next(it)
    it.close()  # closing stops the decoding loop
    assert isinstance(first, str)
    a = "".join(
        stream_generate(
            model, tok, "Hello", max_new_tokens=8, eos_token_id=None, do_sample=True, seed=5
        )
    )
    b = "".join(
        stream_generate(
            model, tok, "Hello", max_new_tokens=8, eos_token_id=None, do_sample=True, seed=5
        )
    )
    assert a == b


def test_streaming_rejects_batches_and_beams(tok, model):
    with pytest.raises(ValueError, match="num_beams"):
        list(stream_generate(model, tok, "Hi", num_beams=2, max_new_tokens=2))
    with pytest.raises(ValueError, match="batch 1"):
        generate(
            model, torch.tensor([[1, 2], [3, 4]]), streamer=TextStreamer(tok), max_new_tokens=2
        )
