"""Tokenizer files: the shipped GPT-2 vocabulary, folders, the Hub, and saving.

Why a module of its own: reading and writing folders is where a tokenizer meets the
outside world (files written by ``transformers``, by older gpt2kit releases, or by hand),
so every check that names a file lives here, and nothing here knows about encoding.
Folders written by :func:`write_folder` load in ``transformers.AutoTokenizer``, and
folders written by ``transformers`` (4.x with ``vocab.json`` + ``merges.txt``, 5.x with
only ``tokenizer.json``) load here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

from ..hub import HubError, HubOptions, resolve_folder

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

EOT = "<|endoftext|>"
"""GPT-2's single special token (id 50256): end of text, also used as BOS and UNK."""

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "gpt2"
"""Folder with the shipped ``vocab.json`` and ``merges.txt`` (see scripts/make_gpt2_vocab.py)."""

OPENAI_GPT2_NAMES = frozenset(
    {
        "gpt2",
        "gpt2-medium",
        "gpt2-large",
        "gpt2-xl",
        "distilgpt2",
        "openai-community/gpt2",
        "openai-community/gpt2-medium",
        "openai-community/gpt2-large",
        "openai-community/gpt2-xl",
        "distilbert/distilgpt2",
    }
)
"""Model names that share OpenAI's GPT-2 vocabulary and load the shipped files offline."""

VERY_LARGE_INTEGER = int(1e30)
"""``transformers``' "no limit" ``model_max_length`` (a folder that does not set one)."""
LARGE_INTEGER = int(1e20)

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
HUB_PATTERNS = [*TOKENIZER_FILES, *CONFIG_FILES]


def shipped_files() -> tuple[Path, Path]:
    vocab, merges = ASSETS_DIR / "vocab.json", ASSETS_DIR / "merges.txt"
    if not (vocab.is_file() and merges.is_file()):
        raise FileNotFoundError(
            f"the bundled GPT-2 vocabulary is missing from {ASSETS_DIR}; reinstall gpt2kit "
            "or regenerate it with scripts/make_gpt2_vocab.py"
        )
    return vocab, merges


def token_content(value: Any) -> str | None:
    """Special-token value from a config: ``str``, ``AddedToken``, ``{"content": ...}`` or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, AddedToken):
        return value.content
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"cannot read a special token from {value!r}")


def read_json(path: Path | None) -> dict[str, Any]:
    """A JSON object from ``path`` ({} when absent); errors name the file."""
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def load_tokenizer_json(path: Path) -> Tokenizer:
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer_file {path} does not exist")
    model_type = read_json(path).get("model", {}).get("type", "BPE")
    if model_type != "BPE":
        raise ValueError(
            f"{path} holds a {model_type} tokenizer; GPT2Tokenizer needs byte-level BPE"
        )
    return Tokenizer.from_file(os.fspath(path))


def build_backend(
    vocab_file: PathLike | None,
    merges_file: PathLike | None,
    tokenizer_file: PathLike | None,
    tokenizer_object: Tokenizer | None,
    add_prefix_space: bool,
) -> tuple[Tokenizer, bool]:
    """The Rust tokenizer from one source; True when the shipped files were used."""
    sources = [tokenizer_object is not None, tokenizer_file is not None]
    sources.append(vocab_file is not None or merges_file is not None)
    if sum(sources) > 1:
        raise ValueError(
            "pass only one of tokenizer_object, tokenizer_file, or vocab_file+merges_file"
        )
    if (vocab_file is None) != (merges_file is None):
        raise ValueError("vocab_file and merges_file must be given together")
    if tokenizer_object is not None:
        return Tokenizer.from_str(tokenizer_object.to_str()), False  # never mutate the caller's
    if tokenizer_file is not None:
        return load_tokenizer_json(Path(tokenizer_file)), False
    shipped = vocab_file is None
    if vocab_file is None:
        vocab_file, merges_file = shipped_files()
    assert merges_file is not None
    backend = Tokenizer(models.BPE.from_file(os.fspath(vocab_file), os.fspath(merges_file)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=add_prefix_space, use_regex=True
    )
    return backend, shipped


# --------------------------------------------------------------------------- folders
def folder_files(path: Path) -> dict[str, Path]:
    """The tokenizer files present in a local folder; an error if it has none to load."""
    files = {n: path / n for n in (*TOKENIZER_FILES, *CONFIG_FILES)}
    files = {n: p for n, p in files.items() if p.is_file()}
    if "tokenizer.json" not in files and not {"vocab.json", "merges.txt"} <= set(files):
        raise FileNotFoundError(
            f"{path} has no tokenizer.json and no vocab.json + merges.txt; "
            "save one with GPT2Tokenizer.save_pretrained(folder) or use 'gpt2'"
        )
    return files


def looks_local(name: str) -> bool:
    path = Path(name)
    return (
        name.startswith((".", "/", "~"))
        or os.sep in name.replace("/", "")
        or name.count("/") > 1
        or path.suffix in {".json", ".txt"}
    )


def download_from_hub(repo_id: str, hub_options: HubOptions) -> dict[str, Path]:
    """Fetch only the tokenizer files of a Hub repo (through :mod:`gpt2kit.hub`)."""
    try:
        folder = resolve_folder(
            repo_id, hub_options, allow_patterns=list(HUB_PATTERNS), need_weights=False
        )
    except HubError as e:
        raise OSError(
            f"could not get the tokenizer of {repo_id!r} from the Hugging Face Hub "
            f"(no network, offline mode, or not in the cache): {e}. Pass a local folder "
            "holding tokenizer.json or vocab.json + merges.txt instead (for example one "
            "written by save_pretrained), or 'gpt2' for the bundled GPT-2 vocabulary"
        ) from e
    try:
        return folder_files(folder)
    except FileNotFoundError as e:
        raise OSError(
            f"Hub repo {repo_id!r} has no tokenizer.json and no vocab.json + merges.txt; it "
            "is not a byte-level BPE (GPT-2 style) tokenizer"
        ) from e


def settings_from_folder(
    files: Mapping[str, Path], special_keys: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Constructor settings from tokenizer_config.json / special_tokens_map.json.

    Returns ``(settings, config)``; special_tokens_map.json wins over tokenizer_config.json,
    as in ``transformers``. Keys present with ``null`` are kept as ``None`` so the caller
    can tell "unset" from "absent".
    """
    config = read_json(files.get("tokenizer_config.json"))
    special_map = read_json(files.get("special_tokens_map.json"))
    where = files.get("tokenizer_config.json")
    settings: dict[str, Any] = {}
    for key, kind in (
        ("padding_side", str),
        ("truncation_side", str),
        ("add_prefix_space", bool),
        ("trim_offsets", bool),
        ("split_special_tokens", bool),
        ("clean_up_tokenization_spaces", bool),
        ("add_bos_token", bool),  # True is refused by the constructor, never dropped
        ("add_eos_token", bool),
        ("errors", str),
    ):
        if config.get(key) is not None:
            if not isinstance(config[key], kind):
                raise ValueError(
                    f"{where}: field {key!r} must be a {kind.__name__}, got {config[key]!r}"
                )
            settings[key] = config[key]
    max_len = config.get("model_max_length")
    if max_len is not None:
        if isinstance(max_len, bool) or not isinstance(max_len, (int, float)) or max_len <= 0:
            raise ValueError(
                f"{where}: field 'model_max_length' must be a positive number, got {max_len!r}"
            )
        settings["model_max_length"] = int(min(max_len, VERY_LARGE_INTEGER))
    for source in (config, special_map):
        for key in special_keys:
            if key in source:
                settings[key] = token_content(source[key])
        extra = source.get("additional_special_tokens") or source.get("extra_special_tokens")
        if isinstance(extra, list) and extra:
            settings["additional_special_tokens"] = [token_content(t) for t in extra]
    template = config.get("chat_template")
    if "chat_template.jinja" in files:
        template = files["chat_template.jinja"].read_text(encoding="utf-8")
    if template is not None:
        if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default", next(iter(named.values()), None))
        if not isinstance(template, str):
            raise ValueError(f"{where}: field 'chat_template' must be a string")
        settings["chat_template"] = template
    return settings, config


def byte_level_prefix_space(tokenizer_json: Path) -> bool | None:
    """``add_prefix_space`` of a tokenizer.json's ByteLevel pre-tokenizer, if it has one."""
    pre = read_json(tokenizer_json).get("pre_tokenizer")
    if isinstance(pre, dict) and pre.get("type") == "ByteLevel":
        return bool(pre.get("add_prefix_space", False))
    return None


# --------------------------------------------------------------------------- saving
def write_folder(
    out: Path,
    backend: Tokenizer,
    config: dict[str, Any],
    special_map: dict[str, Any],
    chat_template: str | None,
) -> tuple[str, ...]:
    """Write tokenizer.json, vocab.json, merges.txt and the two configs into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    full = json.loads(backend.to_str())
    full["truncation"] = None  # the files hold the pipeline, never a call's settings
    full["padding"] = None
    model = full["model"]
    # Legacy "left right" merge strings load in every tokenizers release (>= 0.15);
    # byte-level tokens never contain a literal space, so this is lossless.
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    model["merges"] = merges
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    config = dict(config)
    config["added_tokens_decoder"] = {
        str(i): {
            "content": t.content,
            "lstrip": t.lstrip,
            "normalized": t.normalized,
            "rstrip": t.rstrip,
            "single_word": t.single_word,
            "special": t.special,
        }
        for i, t in sorted(backend.get_added_tokens_decoder().items())
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    written = {
        "tokenizer.json": json.dumps(full, ensure_ascii=False, indent=2) + "\n",
        "vocab.json": json.dumps(vocab),
        "merges.txt": "\n".join(["#version: 0.2", *merges]) + "\n",
        "tokenizer_config.json": json.dumps(config, ensure_ascii=False, indent=2) + "\n",
        "special_tokens_map.json": json.dumps(special_map, ensure_ascii=False, indent=2) + "\n",
    }
    paths = []
    for name, text in written.items():
        p = out / name
        p.write_text(text, encoding="utf-8", newline="\n")
        paths.append(str(p))
    return tuple(paths)
