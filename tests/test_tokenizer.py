"""Tests for gpt2kit.tokenizer: ids must equal OpenAI's encoder (tiktoken) and Hugging Face's.

The tiktoken reference is rebuilt from our shipped vocab.json (byte-level unicode ->
bytes, rank = id for ids < 50256), so the tests need neither the network nor the
openai-whisper download that scripts/make_gpt2_vocab.py reads.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpt2kit.tokenizer import ASSETS_DIR, EOT, OPENAI_GPT2_NAMES, BatchEncoding, GPT2Tokenizer

tiktoken = pytest.importorskip("tiktoken")

ROOT = Path(__file__).resolve().parents[1]
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SETTINGS = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TRICKY = [
    "",
    " ",
    "  ",
    "   ",
    "\n",
    "\n\n",
    "\n\n\n   \n",
    "\t",
    "\t\tindented\twith tabs\t",
    "trailing spaces   ",
    "   leading spaces",
    "a  \n  b",
    "\r\n\r\nwindows\r\n",
    "Hello world",
    " Hello world",
    "I'm they'll we've you're she'd it's don't",
    "I'M THEY'LL WE'VE",
    "''s 's'  ' 't",
    "emoji 👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷",
    "日本語のテキスト、中文字符。한국어",
    "e\u0301 a\u0308\u0304 Z\u0337\u0328\u034ea\u0334l\u0338g\u0335o\u0336",
    "\u00a0nbsp\u2009thin\u3000ideographic\u2028line\u2029para\u0085nel",
    "\u200bzero\u200dwidth\ufeffbom",
    "123456789 3.14159 1,000,000 ½ ² Ⅻ ٣",
    "x\x00y\x7f\x1b[31m",
    "<|endoftext|>",
    "a<|endoftext|>b",
    "<|endoftext|><|endoftext|>",
    "x <|endoftext|> y",
    "<|endoftext",
    "<|endoftext|",
    "def f(x):\n    return x**2  # comment\n",
    "https://example.com/path?q=1&r=2#frag",
    "a" * 3000,
    "hello " * 500,
    " " * 300 + "x",
]

FRAGMENTS = [
    " ",
    "  ",
    "\n",
    "\t",
    "'s",
    "'ll",
    "'M",
    "<|endoftext|>",
    "<|end",
    "👨‍👩‍👧",
    "e\u0301",
    "日本",
    "123",
    "\u00a0",
    "\u3000",
    "Hello",
    " world",
    "!",
]
tricky_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=12).map("".join)
any_text = st.text() | tricky_text
ascii_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127)) | st.lists(
    st.sampled_from([" ", "  ", "\n", "it's", "Hello", " world", "<|endoftext|>", "42"]),
    max_size=10,
).map("".join)


# --------------------------------------------------------------------------- fixtures
def _tiktoken_reference() -> Any:
    """tiktoken's GPT-2 encoding rebuilt from our shipped vocab.json."""
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    vocab = json.loads((ASSETS_DIR / "vocab.json").read_text(encoding="utf-8"))
    ranks = {bytes(byte_of[c] for c in tok): i for tok, i in vocab.items() if i < 50256}
    return tiktoken.Encoding(
        name="gpt2_from_gpt2kit_assets",
        pat_str=GPT2_PAT,
        mergeable_ranks=ranks,
        special_tokens={EOT: 50256},
    )


def _bytes_to_unicode() -> dict[int, str]:
    return _load_script().bytes_to_unicode()


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_gpt2_vocab", ROOT / "scripts" / "make_gpt2_vocab.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOK = GPT2Tokenizer.from_pretrained("gpt2")
TOK_PLAIN = GPT2Tokenizer.from_pretrained("gpt2", split_special_tokens=True)
TOK_UNTRIMMED = GPT2Tokenizer(trim_offsets=False)
REF = _tiktoken_reference()


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("gpt2_tok")
    TOK.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def hf_tok(saved_dir: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2TokenizerFast.from_pretrained(str(saved_dir))


# --------------------------------------------------------------------------- shipped files
def test_shipped_vocab_and_merges_have_gpt2_shape() -> None:
    vocab = json.loads((ASSETS_DIR / "vocab.json").read_text(encoding="utf-8"))
    lines = (ASSETS_DIR / "merges.txt").read_text(encoding="utf-8").split("\n")
    assert len(vocab) == 50257 and vocab[EOT] == 50256
    assert sorted(vocab.values()) == list(range(50257))
    assert lines[0] == "#version: 0.2" and lines[-1] == ""
    merges = lines[1:-1]
    assert len(merges) == 50000
    assert merges[:8] == ["Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r"]
    assert merges[-3:] == ["ĠColl ider", "Ġinform ants", "Ġg azed"]
    for rank, merge in enumerate(merges):
        left, right = merge.split(" ")
        assert vocab[left + right] == 256 + rank
        assert vocab[left] < 256 + rank and vocab[right] < 256 + rank


def test_script_rederives_shipped_files_byte_for_byte() -> None:
    """derive() on ranks read back from vocab.json reproduces both files exactly."""
    script = _load_script()
    vocab_text, merges_text = script.derive(dict(REF._mergeable_ranks))
    assert vocab_text.encode() == (ASSETS_DIR / "vocab.json").read_bytes()
    assert merges_text.encode() == (ASSETS_DIR / "merges.txt").read_bytes()


def test_known_gpt2_ids() -> None:
    assert TOK.encode("Hello world") == [15496, 995]
    assert TOK.encode(" Hello world") == [18435, 995]
    assert TOK.encode("<|endoftext|>") == [50256]
    assert TOK.vocab_size == len(TOK) == 50257
    assert TOK.eos_token == TOK.bos_token == TOK.pad_token == EOT
    assert TOK.eos_token_id == TOK.bos_token_id == TOK.pad_token_id == 50256
    assert TOK.padding_side == "right" and TOK.model_max_length == 1024


@pytest.mark.parametrize("name", sorted(OPENAI_GPT2_NAMES))
def test_openai_names_load_offline(name: str) -> None:
    tok = GPT2Tokenizer.from_pretrained(name)
    assert tok.encode("Hello world") == [15496, 995]


# --------------------------------------------------------------------------- reference ids
@pytest.mark.parametrize("text", TRICKY)
def test_tricky_strings_match_tiktoken_and_round_trip(text: str) -> None:
    assert TOK.encode(text) == REF.encode(text, allowed_special="all")
    assert TOK_PLAIN.encode(text) == REF.encode(text, disallowed_special=())
    assert TOK.encode(text, split_special_tokens=True) == REF.encode(text, disallowed_special=())
    assert TOK.decode(TOK.encode(text)) == text
    assert TOK_PLAIN.decode(TOK_PLAIN.encode(text)) == text


@SETTINGS
@given(any_text)
def test_hypothesis_ids_match_tiktoken(text: str) -> None:
    assert TOK.encode(text) == REF.encode(text, allowed_special="all")
    assert TOK_PLAIN.encode(text) == REF.encode(text, disallowed_special=())
    assert TOK.decode(TOK.encode(text)) == text


def test_special_token_as_text_flag() -> None:
    ids = TOK.encode("a<|endoftext|>", split_special_tokens=True)
    assert ids == [64, 27, 91, 437, 1659, 5239, 91, 29]
    assert TOK.encode("a<|endoftext|>") == [64, 50256]  # per-call override left it unchanged
    assert TOK(["a<|endoftext|>"], split_special_tokens=True)["input_ids"] == [ids]
    assert TOK.decode(ids) == "a<|endoftext|>"


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_strings_match_transformers(hf_tok: Any, text: str) -> None:
    assert hf_tok(text)["input_ids"] == TOK.encode(text)
    assert hf_tok.decode(TOK.encode(text)) == TOK.decode(TOK.encode(text))


def test_hypothesis_ids_match_transformers(hf_tok: Any) -> None:
    @settings(SETTINGS, max_examples=200)
    @given(any_text)
    def check(text: str) -> None:
        assert hf_tok(text)["input_ids"] == TOK.encode(text)

    check()


# --------------------------------------------------------------------------- batches
def test_batch_padding_right_and_left() -> None:
    texts = ["Hello world", "Hi", ""]
    right = TOK(texts, padding=True)
    assert right["input_ids"] == [[15496, 995], [17250, 50256], [50256, 50256]]
    assert right["attention_mask"] == [[1, 1], [1, 0], [0, 0]]
    left = TOK(texts, padding="longest", padding_side="left")
    assert left["input_ids"] == [[15496, 995], [50256, 17250], [50256, 50256]]
    assert left["attention_mask"] == [[1, 1], [0, 1], [0, 0]]
    assert TOK.padding_side == "right"  # per-call override only
    assert left.word_ids(1) == [None, 0] and left.tokens(1) == [EOT, "Hi"]

    tok = GPT2Tokenizer(padding_side="left")
    assert tok(texts, padding=True)["input_ids"] == left["input_ids"]
    assert TOK(texts, padding="max_length", max_length=4)["input_ids"][1] == [17250] + [50256] * 3
    assert len(TOK("x", padding="max_length")["input_ids"]) == 1024
    assert TOK(texts, padding=True, pad_to_multiple_of=8)["attention_mask"][0] == [1, 1] + [0] * 6
    assert TOK(texts)["input_ids"] == [[15496, 995], [17250], []]  # no padding by default


def test_batch_matches_transformers_padding(hf_tok: Any) -> None:
    texts = ["Hello world, it's me", "Hi", " spaced  out ", "<|endoftext|>x"]
    for side in ("left", "right"):
        hf_tok.padding_side = side
        ref = hf_tok(texts, padding=True)
        ours = TOK(texts, padding=True, padding_side=side)
        assert ours["input_ids"] == ref["input_ids"]
        assert ours["attention_mask"] == ref["attention_mask"]
    hf_tok.padding_side = "right"


def test_tensors() -> None:
    torch = pytest.importorskip("torch")
    enc = TOK(["Hello world", "Hi"], padding=True, return_tensors="pt")
    assert isinstance(enc, BatchEncoding)
    assert enc.input_ids.dtype == torch.long and enc.input_ids.shape == (2, 2)
    assert enc.attention_mask.tolist() == [[1, 1], [1, 0]]
    single = TOK("Hello world", return_tensors="pt", return_offsets_mapping=True)
    assert single["input_ids"].shape == (1, 2) and single["offset_mapping"].shape == (1, 2, 2)
    assert enc.to("cpu") is enc
    assert TOK.decode(enc["input_ids"][0]) == "Hello world"
    assert TOK.batch_decode(enc["input_ids"], skip_special_tokens=True) == ["Hello world", "Hi"]
    arr = TOK(["a", "b"], return_tensors="np")["input_ids"]
    assert arr.shape == (2, 1) and str(arr.dtype) == "int64"


def test_single_vs_batch_shapes_and_attribute_access() -> None:
    single = TOK("Hello world")
    assert single["input_ids"] == [15496, 995] and single.attention_mask == [1, 1]
    assert not single.is_batched and single.word_ids() == [0, 1]
    with pytest.raises(AttributeError, match="no field"):
        _ = single.offset_mapping
    assert TOK(["Hello world"])["input_ids"] == [[15496, 995]]
    assert TOK([])["input_ids"] == []
    assert "attention_mask" not in TOK("x", return_attention_mask=False)
    assert pickle.loads(pickle.dumps(single)).word_ids() == [0, 1]


# --------------------------------------------------------------------------- truncation
def test_truncation() -> None:
    text = "one two three four five"
    full = TOK.encode(text)
    assert TOK(text, truncation=True, max_length=3)["input_ids"] == full[:3]
    assert TOK(text, max_length=3)["input_ids"] == full  # max_length alone never truncates
    left = GPT2Tokenizer(truncation_side="left")
    assert left(text, truncation=True, max_length=2)["input_ids"] == full[-2:]
    batch = TOK([text, "hi"], truncation=True, max_length=2, padding=True)
    assert batch["input_ids"] == [full[:2], [5303, 50256]]


def test_no_silent_truncation_past_model_max_length() -> None:
    text = "word " * 3000
    ids = TOK(text)["input_ids"]
    assert len(ids) > TOK.model_max_length and ids == REF.encode(text)
    assert len(TOK(text, truncation=True)["input_ids"]) == 1024


def test_pair_truncation_matches_transformers(hf_tok: Any) -> None:
    pairs = [("one two three four five six seven", "x y z"), ("a b c", "d e f"), ("p", "q r s")]
    for a, b in pairs:
        for max_len in range(2, 11):
            ref = hf_tok(a, b, truncation="longest_first", max_length=max_len)
            ours = TOK(a, text_pair=b, truncation=True, max_length=max_len)
            assert ours["input_ids"] == ref["input_ids"], (a, b, max_len)
    enc = TOK("a b c", text_pair="d e f g", truncation="only_second", max_length=5)
    assert enc["input_ids"] == TOK.encode("a b c") + TOK.encode("d e f g")[:2]
    assert enc.sequence_ids() == [0, 0, 0, 1, 1]
    typed = TOK("a b", text_pair="c", return_token_type_ids=True)
    assert typed["token_type_ids"] == [0, 0, 1]
    with pytest.raises(ValueError, match="only_first"):
        TOK("a", text_pair="b c d", truncation="only_first", max_length=2)


# --------------------------------------------------------------------------- offsets
@SETTINGS
@given(ascii_text)
def test_offsets_reconstruct_ascii_tokens(text: str) -> None:
    enc = TOK(text, return_offsets_mapping=True)
    token_texts = [TOK.convert_tokens_to_string([t]) for t in enc.tokens()]
    for (s, e), piece in zip(enc["offset_mapping"], token_texts):
        assert text[s:e] == piece.strip(" ")  # trim_offsets=True drops the carried spaces
    enc = TOK_UNTRIMMED(text, return_offsets_mapping=True)
    assert [text[s:e] for s, e in enc["offset_mapping"]] == token_texts
    assert "".join(text[s:e] for s, e in enc["offset_mapping"]) == text


def test_offsets_unicode_and_transformers(hf_tok: Any) -> None:
    text = "héllo wörld 日本 <|endoftext|> ok"
    enc = TOK(text, return_offsets_mapping=True)
    ref = hf_tok(text, return_offsets_mapping=True)
    assert enc["offset_mapping"] == [tuple(x) for x in ref["offset_mapping"]]
    for s, e in enc["offset_mapping"]:
        assert 0 <= s <= e <= len(text)
    padded = TOK(["a b", "a"], padding=True, return_offsets_mapping=True)
    assert padded["offset_mapping"][1] == [(0, 1), (0, 0)]


# --------------------------------------------------------------------------- split words
def test_is_split_into_words() -> None:
    words = ["Hello", "tokenizers", "world", "!", "it's"]
    enc = TOK(words, is_split_into_words=True, return_offsets_mapping=True)
    assert enc["input_ids"] == TOK.encode("Hello tokenizers world ! it's")
    assert enc.word_ids() == [0, 1, 1, 2, 3, 4, 4]
    for (s, e), w in zip(enc["offset_mapping"], enc.word_ids()):
        assert w is not None and 0 <= s <= e <= len(words[w])
    pieces: dict[int, str] = {}
    for (s, e), w in zip(enc["offset_mapping"], enc.word_ids()):
        assert w is not None
        pieces[w] = pieces.get(w, "") + words[w][s:e]
    assert [pieces[i] for i in range(len(words))] == words

    batch = TOK([["a", "b"], ["c"]], is_split_into_words=True, padding=True)
    assert batch["input_ids"] == [TOK.encode("a b"), TOK.encode("c") + [50256]]
    assert batch.word_ids(0) == [0, 1] and batch.word_ids(1) == [0, None]
    pair = TOK(["a", "b"], text_pair=["c", "d"], is_split_into_words=True)
    assert pair.word_ids() == [0, 1, 0, 1] and pair.sequence_ids() == [0, 0, 1, 1]


def test_is_split_into_words_with_prefix_space_matches_transformers(saved_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2TokenizerFast.from_pretrained(str(saved_dir), add_prefix_space=True)
    ours = GPT2Tokenizer(add_prefix_space=True)
    words = ["Hello", "tokenizers", "world", "!", "it's", "日本"]
    ref = hf(words, is_split_into_words=True)
    enc = ours(words, is_split_into_words=True)
    assert enc["input_ids"] == ref["input_ids"] and enc.word_ids() == ref.word_ids()
    assert enc["input_ids"] == TOK.encode(" " + " ".join(words))


# --------------------------------------------------------------------------- save / load
def test_save_files_and_reload(saved_dir: Path) -> None:
    names = {p.name for p in saved_dir.iterdir()}
    assert {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"} <= names
    assert "special_tokens_map.json" in names
    assert (saved_dir / "vocab.json").read_bytes() == (ASSETS_DIR / "vocab.json").read_bytes()
    assert (saved_dir / "merges.txt").read_bytes() == (ASSETS_DIR / "merges.txt").read_bytes()
    again = GPT2Tokenizer.from_pretrained(saved_dir)
    assert again.encode("Hello world <|endoftext|>") == [15496, 995, 220, 50256]
    assert again.pad_token_id == 50256 and again.model_max_length == 1024


def test_round_trip_through_autotokenizer(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok = GPT2Tokenizer(padding_side="left")
    assert tok.add_special_tokens({"pad_token": "<|pad|>"}) == 1
    assert tok.add_tokens(["<|user|>"]) == 1
    assert len(tok) == 50259 and tok.pad_token_id == 50257 and tok.eos_token_id == 50256
    tok.save_pretrained(tmp_path)

    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(hf) == len(tok) and hf.padding_side == "left"
    assert hf.pad_token == "<|pad|>" and hf.pad_token_id == 50257
    assert hf.eos_token_id == hf.bos_token_id == 50256 and hf.model_max_length == 1024
    texts = ["<|user|>Hi there", "Hello world<|endoftext|>", "日本"]
    ref = hf(texts, padding=True)
    ours = tok(texts, padding=True)
    assert ours["input_ids"] == ref["input_ids"]
    assert ours["attention_mask"] == ref["attention_mask"]
    ids = ours["input_ids"][1]
    assert hf.decode(ids, skip_special_tokens=True) == tok.decode(ids, skip_special_tokens=True)

    back = GPT2Tokenizer.from_pretrained(tmp_path)
    assert back(texts, padding=True)["input_ids"] == ours["input_ids"]
    assert back.pad_token == "<|pad|>" and back.padding_side == "left" and len(back) == 50259

    hf_dir = tmp_path / "from_hf"
    hf.save_pretrained(str(hf_dir))  # transformers 5 writes tokenizer.json + config only
    from_hf = GPT2Tokenizer.from_pretrained(hf_dir)
    assert from_hf(texts, padding=True)["input_ids"] == ours["input_ids"]
    assert from_hf.pad_token_id == 50257 and from_hf.padding_side == "left"

    legacy_dir = tmp_path / "legacy"
    legacy_dir.mkdir()
    for p in tmp_path.iterdir():
        if p.is_file() and p.name != "tokenizer.json":  # vocab/merges + added_tokens_decoder
            (legacy_dir / p.name).write_bytes(p.read_bytes())
    legacy = GPT2Tokenizer.from_pretrained(legacy_dir)
    assert legacy(texts, padding=True)["input_ids"] == ours["input_ids"]
    assert legacy.pad_token_id == 50257 and len(legacy) == 50259


def test_folder_with_only_vocab_and_merges(tmp_path: Path) -> None:
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((ASSETS_DIR / name).read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"pad_token": None, "model_max_length": 512, "add_prefix_space": True})
    )
    tok = GPT2Tokenizer.from_pretrained(tmp_path)
    assert tok.pad_token_id == 50256 and tok.model_max_length == 512 and tok.add_prefix_space
    assert tok.encode("Hello") == [18435]
    files = GPT2Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert files.encode("Hello") == [15496]


def test_pickle_keeps_settings() -> None:
    tok = pickle.loads(pickle.dumps(TOK_PLAIN))
    assert tok.split_special_tokens and tok.encode(EOT) == REF.encode(EOT, disallowed_special=())


# --------------------------------------------------------------------------- errors
def test_clear_errors(tmp_path: Path) -> None:
    no_pad = GPT2Tokenizer(pad_token=None)
    with pytest.raises(ValueError, match="pad_token is None.*pad_token = tok.eos_token"):
        no_pad(["a", "bb"], padding=True)
    assert no_pad(["a", "b c"])["input_ids"] == [[64], [65, 269]]
    with pytest.raises(ValueError, match="padding must be one of"):
        TOK(["a"], padding="longest_first")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="truncation must be one of"):
        TOK(["a"], truncation="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"return_tensors='pt' needs .*padding=True"):
        TOK(["a", "b c"], return_tensors="pt")
    with pytest.raises(ValueError, match="return_tensors must be"):
        TOK("a", return_tensors="tf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="padding_side must be"):
        TOK("a", padding_side="middle")
    with pytest.raises(ValueError, match="is_split_into_words=True expects text"):
        TOK("a b", is_split_into_words=True)
    with pytest.raises(TypeError, match="is_split_into_words=True"):
        TOK([["a", "b"]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="text_pair must have the same shape"):
        TOK(["a", "b"], text_pair=["c"])
    with pytest.raises(ValueError, match="outside this vocabulary"):
        TOK.decode([50257])
    with pytest.raises(KeyError, match="not a token"):
        TOK.convert_tokens_to_ids("hello world")
    with pytest.raises(ValueError, match="add_special_tokens"):
        GPT2Tokenizer().pad_token = "<|not-there|>"
    with pytest.raises(ValueError, match="unsupported keys"):
        GPT2Tokenizer().add_special_tokens({"foo_token": "<foo>"})
    with pytest.raises(FileNotFoundError, match="no such tokenizer folder"):
        GPT2Tokenizer.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        GPT2Tokenizer.from_pretrained(tmp_path)


def test_hub_id_without_network_says_pass_a_local_folder(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    with pytest.raises(OSError, match="Pass a local folder"):
        GPT2Tokenizer.from_pretrained(
            "some-org/some-gpt2-finetune", local_files_only=True, cache_dir=tmp_path
        )


def test_module_does_not_import_torch() -> None:
    """Importing and using the tokenizer package loads neither torch nor transformers."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "from gpt2kit.tokenizer import GPT2Tokenizer\n"
        "t = GPT2Tokenizer(); t(['a', 'b c'], padding=True, truncation=True, max_length=4)\n"
        "t.decode([1, 2]); t.pad({'input_ids': [[1], [2, 3]]})\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'transformers' not in sys.modules and 'huggingface_hub' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_concurrent_calls_with_different_options_do_not_mix() -> None:
    """Padding/truncation live on a private backend copy, configured under a lock."""
    from concurrent.futures import ThreadPoolExecutor

    tok = GPT2Tokenizer()
    texts = ["one two three four five six", "a", "b c"]
    options = [
        {"padding": True},
        {"padding": "max_length", "max_length": 12},
        {"truncation": True, "max_length": 2},
        {"padding": True, "padding_side": "left"},
        {},
    ]
    expected = [tok(texts, **o)["input_ids"] for o in options]
    jobs = [i % len(options) for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: (i, tok(texts, **options[i])["input_ids"]), jobs))
    assert all(ids == expected[i] for i, ids in results)
    assert tok.backend_tokenizer.padding is None and tok.backend_tokenizer.truncation is None


def test_overflow_windows_and_mapping() -> None:
    enc = TOK(
        ["a b c d e f g", "x"],
        truncation=True,
        max_length=3,
        stride=1,
        return_overflowing_tokens=True,
        padding=True,
    )
    assert enc["input_ids"] == [
        [64, 275, 269],
        [269, 288, 304],
        [304, 277, 308],
        [87, 50256, 50256],
    ]
    assert enc["overflow_to_sample_mapping"] == [0, 0, 0, 1]
    assert enc.word_ids(3) == [0, None, None]
    with pytest.raises(TypeError, match=r"text\[1\] is int"):
        TOK(["a", 5])  # type: ignore[list-item]


def test_folder_settings_never_dropped(tmp_path: Path) -> None:
    """A config asking for what GPT-2's tokenizer cannot do is refused, naming it."""
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((ASSETS_DIR / name).read_bytes())
    for config, match in (
        ({"add_bos_token": True}, "add_bos_token"),
        ({"errors": "strict"}, "errors='strict'"),
        ({"padding_side": 3}, "'padding_side' must be a str"),
        ({"model_max_length": "big"}, "'model_max_length' must be a positive number"),
    ):
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=match):
            GPT2Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"tokenizer_config.json:1: invalid JSON"):
        GPT2Tokenizer.from_pretrained(tmp_path)
