"""gpt2kit's GPT2TokenizerFast against transformers' GPT2TokenizerFast on the same files.

Every test builds the reference from the bundled GPT-2 vocabulary (``assets/gpt2``:
vocab.json + merges.txt, exactly what a transformers 4.x GPT-2 folder holds) and runs
the same user code with both tokenizers, asserting equal ids, masks, offsets, special
tokens masks, overflow rows and strings. Inputs: Hypothesis text (any Unicode), tricky
whitespace runs, and lines of tinyshakespeare when the shared data file is present.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpt2kit
from gpt2kit.tokenizer import ASSETS_DIR, EOT, GPT2Tokenizer, GPT2TokenizerFast

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
WHITESPACE = [
    "",
    " ",
    "   ",
    "\n\n\n",
    " \t \n ",
    "  leading",
    "trailing  ",
    "a  b   c    d",
    "\r\n\r\nx",
    "\u00a0nbsp\u3000ideographic\u2028line",
    "emoji 👍🏽 👨‍👩‍👧‍👦 日本語 한국어 e\u0301",
    "x <|endoftext|> y<|endoftext|>",
    "I'M they'll  we've\tdon't",
]


def _shakespeare_lines(n: int, seed: int = 0) -> list[str]:
    if SHAKESPEARE.is_file():
        lines = [ln for ln in SHAKESPEARE.read_text(encoding="utf-8").split("\n") if ln.strip()]
    else:  # the suite still runs where the shared data is absent
        lines = ["First Citizen:", "Before we proceed any further, hear me speak.", "All:"]
    rng = random.Random(seed)
    return [rng.choice(lines) for _ in range(n)]


def _passages(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = _shakespeare_lines(400, seed)
    return [" ".join(rng.sample(lines, rng.randint(3, 8))) for _ in range(n)]


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("gpt2_files")
    for name in ("vocab.json", "merges.txt"):
        (d / name).write_bytes((ASSETS_DIR / name).read_bytes())
    return d


@pytest.fixture(scope="module")
def pair(files_dir: Path) -> tuple[Any, Any]:
    """(ours, theirs), both with pad = EOS (the usual GPT-2 setup before padding)."""
    ours = gpt2kit.AutoTokenizer.from_pretrained(files_dir)
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(files_dir))
    ours.pad_token = ours.eos_token
    theirs.pad_token = theirs.eos_token
    return ours, theirs


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def assert_same(a: Any, b: Any) -> None:
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a:
        assert _plain(a[key]) == _plain(b[key]), key


# --------------------------------------------------------------------------- names, defaults
def test_names_and_defaults_match(files_dir: Path) -> None:
    ours = gpt2kit.AutoTokenizer.from_pretrained(files_dir)
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(files_dir))
    assert type(ours) is gpt2kit.GPT2TokenizerFast
    assert gpt2kit.GPT2TokenizerFast is GPT2TokenizerFast
    for name in (
        "pad_token",
        "pad_token_id",
        "eos_token_id",
        "bos_token_id",
        "unk_token_id",
        "cls_token",
        "sep_token",
        "mask_token",
        "is_fast",
        "model_input_names",
        "model_max_length",
        "padding_side",
        "truncation_side",
        "vocab_size",
        "all_special_tokens",
        "all_special_ids",
        "special_tokens_map",
        "clean_up_tokenization_spaces",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert len(ours) == len(theirs)
    assert GPT2TokenizerFast.from_pretrained("gpt2").model_max_length == 1024
    assert GPT2TokenizerFast.from_pretrained("gpt2").pad_token is None
    assert GPT2Tokenizer.from_pretrained("gpt2").pad_token == EOT  # gpt2kit's convention


# --------------------------------------------------------------------------- single texts
ENC_OPTS = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)


@pytest.mark.parametrize("text", WHITESPACE)
def test_whitespace_and_unicode_match(pair: tuple[Any, Any], text: str) -> None:
    ours, theirs = pair
    a, b = ours(text, **ENC_OPTS), theirs(text, **ENC_OPTS)
    assert_same(a, b)
    assert a.tokens() == b.tokens() and a.word_ids() == b.word_ids()
    assert ours.tokenize(text) == theirs.tokenize(text)
    assert ours.decode(a["input_ids"]) == theirs.decode(b["input_ids"]) == text


def test_hypothesis_text_matches(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair

    @SETTINGS
    @given(
        st.text()
        | st.lists(st.sampled_from(WHITESPACE + ["'s", " w", "\n"]), max_size=8).map("".join)
    )
    def check(text: str) -> None:
        a, b = ours(text, **ENC_OPTS), theirs(text, **ENC_OPTS)
        assert_same(a, b)
        ids = a["input_ids"]
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(
            ids, skip_special_tokens=True
        )

    check()


def test_shakespeare_batch_matches(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    lines = _shakespeare_lines(300, seed=1)
    assert_same(ours(lines, **ENC_OPTS), theirs(lines, **ENC_OPTS))
    assert ours.batch_decode(ours(lines)["input_ids"]) == lines


def test_offsets_at_leading_spaces(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    text = " Hello  world\n  again"
    assert ours(text, return_offsets_mapping=True)["offset_mapping"] == [
        tuple(o) for o in theirs(text, return_offsets_mapping=True)["offset_mapping"]
    ]
    assert ours(text, return_offsets_mapping=True)["offset_mapping"][0] == (0, 6)


# --------------------------------------------------------------------------- padding
@pytest.mark.parametrize("padding", [True, "longest", "max_length", False])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_matches(pair: tuple[Any, Any], padding: Any, side: str) -> None:
    ours, theirs = pair
    texts = _shakespeare_lines(24, seed=2) + ["", " ", "日本 👍"]
    kw = dict(padding=padding, padding_side=side, max_length=40, truncation=True, **ENC_OPTS)
    assert_same(ours(texts, **kw), theirs(texts, **kw))
    kw2 = dict(padding=padding, padding_side=side, pad_to_multiple_of=8)
    assert_same(ours(texts, **kw2), theirs(texts, **kw2))


@pytest.mark.parametrize("kind", ["pt", "np"])
def test_tensors_match(pair: tuple[Any, Any], kind: str) -> None:
    ours, theirs = pair
    texts = _shakespeare_lines(8, seed=3)
    a = ours(texts, padding=True, return_tensors=kind, return_length=True)
    b = theirs(texts, padding=True, return_tensors=kind, return_length=True)
    assert_same(a, b)
    assert type(a["input_ids"]) is type(b["input_ids"])
    assert _plain(ours.encode(texts[0], return_tensors=kind)) == _plain(
        theirs.encode(texts[0], return_tensors=kind)
    )


def test_attention_mask_off_and_token_types(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    kw = dict(return_attention_mask=False, return_token_type_ids=True)
    assert_same(ours("a b", "c d e", **kw), theirs("a b", "c d e", **kw))


# --------------------------------------------------------------------------- truncation
@pytest.mark.parametrize("strategy", [True, "longest_first", "only_first", "only_second"])
def test_pair_truncation_matches(pair: tuple[Any, Any], strategy: Any) -> None:
    ours, theirs = pair
    firsts = _shakespeare_lines(10, seed=4)
    seconds = _shakespeare_lines(10, seed=5)
    for max_length in (24, 32, 48):
        kw = dict(truncation=strategy, max_length=max_length, **ENC_OPTS)
        try:
            ref = theirs(firsts, seconds, **kw)
        except Exception:  # noqa: BLE001 - a pair that cannot fit: both must refuse
            with pytest.raises(ValueError, match="cannot fit"):
                ours(firsts, seconds, **kw)
            continue
        got = ours(firsts, seconds, **kw)
        assert_same(got, ref)
        for i in range(len(firsts)):
            assert got.sequence_ids(i) == ref.sequence_ids(i)


def test_max_length_alone_truncates_like_transformers(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    text = "one two three four five six"
    assert ours(text, max_length=3)["input_ids"] == theirs(text, max_length=3)["input_ids"]
    assert ours.encode(text, max_length=2) == theirs.encode(text, max_length=2)
    assert ours.encode(text, truncation=True, max_length=4) == theirs.encode(
        text, truncation=True, max_length=4
    )
    left_o = GPT2TokenizerFast(truncation_side="left")
    assert left_o(text, truncation=True, max_length=2)["input_ids"] == ours.encode(text)[-2:]


def test_qa_overflow_idiom_matches(pair: tuple[Any, Any]) -> None:
    """The SQuAD preprocessing recipe: windows over the context, mapped back to examples."""
    ours, theirs = pair
    questions = [q + "?" for q in _shakespeare_lines(6, seed=6)]
    contexts = _passages(6, seed=7)
    kw = dict(
        truncation="only_second",
        max_length=64,
        stride=16,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    a, b = ours(questions, contexts, **kw), theirs(questions, contexts, **kw)
    assert_same(a, b)
    assert len(a["input_ids"]) > len(questions)  # windows were made
    assert a["overflow_to_sample_mapping"] == b["overflow_to_sample_mapping"]
    for i in range(len(a["input_ids"])):
        assert a.sequence_ids(i) == b.sequence_ids(i)
    # single-text overflow, batch of one, with tensors
    kw1 = dict(
        truncation=True, max_length=8, stride=2, return_overflowing_tokens=True, padding=True
    )
    assert_same(
        ours(contexts[0], return_tensors="pt", **kw1),
        theirs(contexts[0], return_tensors="pt", **kw1),
    )


# --------------------------------------------------------------------------- split words
def test_is_split_into_words_matches(files_dir: Path, pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    words = [w.split() for w in _shakespeare_lines(10, seed=8)]
    for kw in ({}, {"padding": True, "return_offsets_mapping": True}):
        a = ours(words, is_split_into_words=True, **kw)
        b = theirs(words, is_split_into_words=True, **kw)
        assert_same(a, b)
        assert all(a.word_ids(i) == b.word_ids(i) for i in range(len(words)))
    ours_p = GPT2TokenizerFast.from_pretrained(files_dir, add_prefix_space=True)
    theirs_p = transformers.GPT2TokenizerFast.from_pretrained(str(files_dir), add_prefix_space=True)
    a = ours_p(words[0], is_split_into_words=True, return_offsets_mapping=True)
    b = theirs_p(words[0], is_split_into_words=True, return_offsets_mapping=True)
    assert_same(a, b)
    assert a.word_ids() == b.word_ids()


# --------------------------------------------------------------------------- ids <-> text
def test_id_token_conversions_and_decode(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    ids = theirs("Hello , world ! it 's<|endoftext|>")["input_ids"]
    for skip in (False, True):
        for clean in (None, False, True):
            assert ours.decode(
                ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean
            ) == (theirs.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean))
    assert ours.batch_decode([ids, ids[:2]], skip_special_tokens=True) == theirs.batch_decode(
        [ids, ids[:2]], skip_special_tokens=True
    )
    assert ours.decode(torch.tensor([ids, ids])) == theirs.decode(torch.tensor([ids, ids]))
    toks = theirs.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(ids) == toks
    assert ours.convert_ids_to_tokens(
        ids, skip_special_tokens=True
    ) == theirs.convert_ids_to_tokens(ids, skip_special_tokens=True)
    assert ours.convert_ids_to_tokens(ids[0]) == theirs.convert_ids_to_tokens(ids[0])
    assert ours.convert_tokens_to_ids(toks) == theirs.convert_tokens_to_ids(toks)
    assert ours.convert_tokens_to_string(toks) == theirs.convert_tokens_to_string(toks)
    assert ours.tokenize("Hello", "world") == theirs.tokenize("Hello", "world")
    assert ours.encode("x", "y") == theirs.encode("x", "y")
    assert ours.get_special_tokens_mask(ids, already_has_special_tokens=True) == (
        theirs.get_special_tokens_mask(ids, already_has_special_tokens=True)
    )


def test_encode_plus_and_batch_encode_plus(pair: tuple[Any, Any]) -> None:
    """4.x names (removed in transformers 5): the same as calling the tokenizer."""
    ours, theirs = pair
    assert_same(
        ours.encode_plus("a b", "c", return_length=True), theirs("a b", "c", return_length=True)
    )
    batch = [("a b", "c"), ("d", "e f g")]
    assert_same(ours.batch_encode_plus(batch, padding=True), theirs(batch, padding=True))
    assert_same(ours.batch_encode_plus(["x", "y z"]), theirs(["x", "y z"]))


# --------------------------------------------------------------------------- specials
def test_add_special_tokens_and_tokens_match(files_dir: Path) -> None:
    ours = GPT2TokenizerFast.from_pretrained(files_dir)
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(files_dir))
    spec = {
        "cls_token": "<cls>",
        "sep_token": "<sep>",
        "mask_token": "<mask>",
        "pad_token": "<pad>",
    }
    assert ours.add_special_tokens(spec) == theirs.add_special_tokens(spec) == 4
    assert ours.add_tokens(["<|user|>", "hello"]) == theirs.add_tokens(["<|user|>", "hello"])
    for name in (
        "cls_token_id",
        "sep_token_id",
        "mask_token_id",
        "pad_token_id",
        "all_special_ids",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert len(ours) == len(theirs)
    text = "<cls>hi<sep><|user|> there<mask><pad>"
    assert_same(
        ours(text, return_special_tokens_mask=True), theirs(text, return_special_tokens_mask=True)
    )
    ids = ours.encode(text)
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(
        ids, skip_special_tokens=True
    )
    ours.pad_token = ours.eos_token
    theirs.pad_token = theirs.eos_token
    assert ours.pad_token_id == theirs.pad_token_id == 50256


# --------------------------------------------------------------------------- collators
def test_data_collator_with_padding(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    texts = _shakespeare_lines(6, seed=9)
    feats = [dict(theirs(t), label=i % 2) for i, t in enumerate(texts)]
    for side in ("right", "left"):
        ours.padding_side = theirs.padding_side = side
        for multiple in (None, 8):
            a = transformers.DataCollatorWithPadding(ours, pad_to_multiple_of=multiple)(feats)
            b = transformers.DataCollatorWithPadding(theirs, pad_to_multiple_of=multiple)(feats)
            assert_same(a, b)
    ours.padding_side = theirs.padding_side = "right"
    np_a = ours.pad([{"input_ids": np.array([1, 2, 3])}, {"input_ids": np.array([4])}])
    np_b = theirs.pad([{"input_ids": np.array([1, 2, 3])}, {"input_ids": np.array([4])}])
    assert_same(np_a, np_b)
    assert type(np_a["input_ids"]) is type(np_b["input_ids"])
    kw = dict(padding="max_length", max_length=6, return_attention_mask=False)
    assert_same(ours.pad({"input_ids": [1, 2]}, **kw), theirs.pad({"input_ids": [1, 2]}, **kw))


def test_data_collator_for_language_modeling(pair: tuple[Any, Any], files_dir: Path) -> None:
    ours, theirs = pair
    feats = [ours(t) for t in _shakespeare_lines(5, seed=10)]
    for multiple in (None, 8):
        a = transformers.DataCollatorForLanguageModeling(
            ours, mlm=False, pad_to_multiple_of=multiple
        )(feats)
        b = transformers.DataCollatorForLanguageModeling(
            theirs, mlm=False, pad_to_multiple_of=multiple
        )(feats)
        assert_same(a, b)
    lists = [f["input_ids"] for f in feats]
    assert_same(
        transformers.DataCollatorForLanguageModeling(ours, mlm=False)(lists),
        transformers.DataCollatorForLanguageModeling(theirs, mlm=False)(lists),
    )
    # masked LM after adding a mask token, same seed -> same masks
    o = GPT2TokenizerFast.from_pretrained(files_dir, pad_token=EOT)
    t = transformers.GPT2TokenizerFast.from_pretrained(str(files_dir), pad_token=EOT)
    o.add_special_tokens({"mask_token": "<mask>"})
    t.add_special_tokens({"mask_token": "<mask>"})
    out = []
    for tok in (o, t):
        torch.manual_seed(0)
        out.append(transformers.DataCollatorForLanguageModeling(tok, mlm=True)(feats))
    assert_same(out[0], out[1])


# --------------------------------------------------------------------------- save / load
def test_save_load_both_ways(tmp_path: Path, files_dir: Path) -> None:
    ours = GPT2TokenizerFast.from_pretrained(files_dir, padding_side="left")
    ours.add_special_tokens({"pad_token": "<|pad|>", "cls_token": "<|cls|>"})
    ours.add_tokens(["<|user|>"])
    ours.chat_template = CHATML
    ours.save_pretrained(tmp_path / "ours")
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "ours"))
    texts = ["<|user|>Hi <|cls|>", " spaced  out ", "日本"] + _shakespeare_lines(5, seed=11)
    kw = dict(padding=True, return_offsets_mapping=True, return_special_tokens_mask=True)
    assert_same(ours(texts, **kw), theirs(texts, **kw))
    for name in (
        "pad_token_id",
        "cls_token_id",
        "padding_side",
        "chat_template",
        "model_max_length",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name
    msgs = [{"role": "user", "content": "hi"}]
    assert theirs.apply_chat_template(msgs, tokenize=False) == ours.apply_chat_template(
        msgs, tokenize=False
    )

    theirs.save_pretrained(str(tmp_path / "theirs"))
    back = GPT2TokenizerFast.from_pretrained(tmp_path / "theirs")
    assert_same(back(texts, **kw), theirs(texts, **kw))
    for name in (
        "pad_token_id",
        "cls_token_id",
        "padding_side",
        "chat_template",
        "model_max_length",
    ):
        assert getattr(back, name) == getattr(theirs, name), name
    assert len(back) == len(theirs)


# --------------------------------------------------------------------------- chat templates
def test_apply_chat_template_matches(tmp_path: Path, files_dir: Path) -> None:
    d = tmp_path / "chat"
    d.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (d / name).write_bytes((files_dir / name).read_bytes())
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML}))
    ours = GPT2TokenizerFast.from_pretrained(d, pad_token=EOT)
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(d), pad_token=EOT)
    chats = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello 日本"}],
        [{"role": "user", "content": "  spaced  "}, {"role": "assistant", "content": "ok then"}],
    ]
    for gen in (False, True):
        assert ours.apply_chat_template(chats[0], tokenize=False, add_generation_prompt=gen) == (
            theirs.apply_chat_template(chats[0], tokenize=False, add_generation_prompt=gen)
        )
    assert_same(ours.apply_chat_template(chats[0]), theirs.apply_chat_template(chats[0]))
    kw = dict(padding=True, return_tensors="pt")
    assert_same(ours.apply_chat_template(chats, **kw), theirs.apply_chat_template(chats, **kw))
    assert ours.apply_chat_template(chats[1], return_dict=False) == theirs.apply_chat_template(
        chats[1], return_dict=False
    )
    assert ours.apply_chat_template(chats[1], tokenize=False, continue_final_message=True) == (
        theirs.apply_chat_template(chats[1], tokenize=False, continue_final_message=True)
    )


def test_chat_template_is_sandboxed() -> None:
    jinja2 = pytest.importorskip("jinja2")
    tok = GPT2TokenizerFast()
    evil = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(jinja2.exceptions.SecurityError):
        tok.apply_chat_template(
            [{"role": "user", "content": "x"}], chat_template=evil, tokenize=False
        )
    mutate = "{% set _ = messages.append({'role': 'x'}) %}{{ messages | length }}"
    with pytest.raises(jinja2.exceptions.SecurityError):
        tok.apply_chat_template(
            [{"role": "user", "content": "x"}], chat_template=mutate, tokenize=False
        )
    with pytest.raises(ValueError, match="no chat_template"):
        tok.apply_chat_template([{"role": "user", "content": "x"}])


# --------------------------------------------------------------------------- errors
def test_bad_input_is_named() -> None:
    tok = GPT2TokenizerFast(pad_token=EOT)
    with pytest.raises(TypeError, match=r"text\[1\] is int"):
        tok(["a", 5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"text_pair\[0\] is NoneType"):
        tok(["a"], [None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"text\[0\]\[1\] is int"):
        tok([["a", 1]], is_split_into_words=True)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="unsupported argument 'foo'"):
        tok("a", foo=1)
    with pytest.raises(TypeError, match="unsupported argument 'pad_to_max_length'.*max_length"):
        tok("a", pad_to_max_length=True)
    with pytest.raises(TypeError, match="unsupported argument 'bar'"):
        tok.encode("a", bar=2)
    with pytest.raises(TypeError, match="unsupported argument 'return_assistant_tokens_mask'"):
        tok.apply_chat_template(
            [{"role": "user", "content": "x"}],
            chat_template=CHATML,
            return_assistant_tokens_mask=True,
        )
    with pytest.raises(ValueError, match="stride=4 must be smaller than max_length=4"):
        tok("a b c d e f", truncation=True, max_length=4, stride=4, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="pad token"):
        GPT2TokenizerFast()(["a", "b c"], padding=True)
    with pytest.raises(ValueError, match="not a multiple of pad_to_multiple_of"):
        tok(["a"], padding=True, truncation=True, max_length=10, pad_to_multiple_of=4)


def test_hypothesis_options_match(pair: tuple[Any, Any]) -> None:
    """Random batches, pairs and option combinations: identical outputs (or both refuse)."""
    ours, theirs = pair
    pool = _shakespeare_lines(200, seed=12) + WHITESPACE
    options = st.fixed_dictionaries(
        {},
        optional={
            "padding": st.sampled_from([True, False, "longest", "max_length"]),
            "truncation": st.sampled_from(
                [True, False, "longest_first", "only_first", "only_second"]
            ),
            "max_length": st.integers(4, 40),
            "stride": st.integers(0, 3),
            "padding_side": st.sampled_from(["left", "right"]),
            "pad_to_multiple_of": st.sampled_from([None, 4]),
            "return_overflowing_tokens": st.booleans(),
            "return_offsets_mapping": st.booleans(),
            "return_special_tokens_mask": st.booleans(),
            "return_length": st.booleans(),
            "return_token_type_ids": st.booleans(),
        },
    )

    @settings(SETTINGS, max_examples=120)
    @given(
        st.lists(st.sampled_from(pool) | st.text(max_size=30), min_size=1, max_size=5),
        st.booleans(),
        options,
    )
    def check(texts: list[str], paired: bool, kw: dict[str, Any]) -> None:
        args = (texts, list(reversed(texts))) if paired else (texts,)
        try:
            ref = theirs(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - includes the backend's panics
            if isinstance(e, KeyboardInterrupt):
                raise
            with pytest.raises((ValueError, TypeError)):
                ours(*args, **kw)
            return
        got = ours(*args, **kw)
        assert_same(got, ref)
        for i in range(len(got["input_ids"])):
            assert got.word_ids(i) == ref.word_ids(i)
            assert got.sequence_ids(i) == ref.sequence_ids(i)

    check()


def test_pair_stride_too_large_is_named() -> None:
    tok = GPT2TokenizerFast()
    kw = dict(truncation="only_second", max_length=5, stride=2, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match=r"stride=2 is too large.*keeps only 1 tokens"):
        tok("a b c d", "e f g h i j", **kw)
    with pytest.raises(ValueError, match="only_first' cannot fit max_length=3"):
        tok("a b c d", "e f g h i j", truncation="only_first", max_length=3)
