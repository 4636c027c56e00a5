"""Hugging Face Hub access: the one module that talks to `huggingface_hub`.

Config, checkpoint and tokenizer loading resolve a name through `resolve_folder`, so
`revision`, `token`, `cache_dir`, `local_files_only` and `force_download` mean the same
everywhere (the names and meanings of `transformers`' `from_pretrained`). A local folder
is used as is and never touches the network; anything else is a Hub repository id.
`push_folder` uploads a saved folder (`push_to_hub`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Files a GPT-2 checkpoint needs: configs, weights, tokenizer files.
WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
BIN_PATTERNS = ["pytorch_model*.bin*"]


class HubError(OSError):
    """A name is neither a local folder nor a repository the Hub (or its cache) could give."""


@dataclass(frozen=True)
class HubOptions:
    """Where and how to fetch a repository; the fields are `from_pretrained`'s keywords."""

    revision: str | None = None
    token: str | bool | None = None
    cache_dir: str | os.PathLike | None = None
    local_files_only: bool = False
    force_download: bool = False

    @classmethod
    def pop_from(cls, kwargs: dict[str, Any]) -> HubOptions:
        """Take the Hub keywords out of `kwargs` (a `from_pretrained` call's)."""
        names = cls.__dataclass_fields__
        return cls(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})


def is_local(name_or_path: str | os.PathLike) -> bool:
    return Path(name_or_path).is_dir()


def resolve_folder(
    name_or_path: str | os.PathLike,
    options: HubOptions | None = None,
    *,
    allow_patterns: list[str] | None = None,
    need_weights: bool = True,
) -> Path:
    """A local folder as is; otherwise the Hub repository `name_or_path` downloaded (cached).

    With `need_weights`, a repository without safetensors also fetches `pytorch_model*.bin`.
    """
    options = options or HubOptions()
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise HubError(f"{name!r} is not a folder; pass a folder that holds config.json")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - huggingface_hub is a dependency
        raise HubError(f"{name!r} is not a local folder and huggingface_hub is missing") from err
    kwargs = {k: v for k, v in asdict(options).items() if v is not None}
    patterns = allow_patterns or WEIGHT_PATTERNS
    try:
        if options.local_files_only or options.force_download:
            folder = Path(snapshot_download(name, allow_patterns=patterns, **kwargs))
        else:
            try:  # the cache first: works offline for anything downloaded before
                folder = Path(
                    snapshot_download(
                        name, allow_patterns=patterns, **{**kwargs, "local_files_only": True}
                    )
                )
            except Exception:
                folder = Path(snapshot_download(name, allow_patterns=patterns, **kwargs))
        if need_weights and not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(name, allow_patterns=BIN_PATTERNS, **kwargs))
        return folder
    except Exception as err:
        where = " (local_files_only=True: the cache only)" if options.local_files_only else ""
        raise HubError(
            f"could not get {name!r} from the Hugging Face Hub{where} "
            f"({type(err).__name__}: {err}). Without network access, pass a local folder that "
            "holds config.json and the weights (e.g. one written by save_pretrained)"
        ) from err


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str = "Upload model",
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    api: Any = None,
) -> Any:
    """Create `repo_id` if needed and upload `folder` to it; returns the commit info.

    `api` is a `huggingface_hub.HfApi` (built with `token` when not given).
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        token=token,
        revision=revision,
        create_pr=create_pr,
    )
