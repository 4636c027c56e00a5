"""Chat templates: the model folder's Jinja2 template, rendered in a sandbox.

The template comes from `--chat-template FILE`, else the model folder's
`chat_template.jinja` or `tokenizer_config.json`'s `chat_template` (a string, or
transformers' list of named templates, of which `default` is used). There is no built-in
fallback: GPT-2 was never trained on a chat format, and a silently invented one gives
plausible-looking garbage (transformers and vLLM removed their default templates for the
same reason), so a model without a template answers chat requests with a 400 naming it.

Rendering follows transformers' `apply_chat_template`: an immutable sandboxed Jinja2
environment (a template cannot reach Python objects or the file system), `trim_blocks`
and `lstrip_blocks`, the variables `messages`, `add_generation_prompt`, `bos_token`,
`eos_token` and any `chat_template_kwargs`, plus `raise_exception` and `strftime_now`.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import APIError


def find_template(
    model_dir: str | os.PathLike | None, file: str | os.PathLike | None
) -> str | None:
    """The template text from `file`, else from the model folder, else None."""
    if file is not None:
        try:
            return Path(file).read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"--chat-template {file}: cannot read it: {err}") from err
    if model_dir is None or not Path(model_dir).is_dir():
        return None
    folder = Path(model_dir)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{config}: not a JSON object: {err}") from err
    if isinstance(value, list):  # [{"name": ..., "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default") or next(iter(named.values()), None)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{config}: chat_template must be a string, got {type(value).__name__}")
    return value


@lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, indent=None, **kw: json.dumps(
        x, indent=indent, ensure_ascii=False
    )
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def compile_template(template: str) -> None:
    """Fail at start-up, not at the first request, on a template that does not parse."""
    from jinja2 import TemplateError

    try:
        _compiled(template)
    except TemplateError as err:
        raise ValueError(f"chat template does not parse: {err}") from err


def render(
    template: str | None,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool,
    continue_final_message: bool = False,
    special: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """The prompt text for `messages` (400 when there is no template or it fails)."""
    if template is None:
        raise APIError(
            400,
            "messages: this model has no chat template (no chat_template in its "
            "tokenizer_config.json or chat_template.jinja); start the server with "
            "--chat-template FILE, or use /v1/completions with a plain prompt",
            param="messages",
            code="missing_chat_template",
        )
    from jinja2 import TemplateError

    if continue_final_message and add_generation_prompt:
        raise APIError(
            400,
            "continue_final_message: cannot be combined with add_generation_prompt",
            param="continue_final_message",
        )
    if continue_final_message and messages[-1].get("role") != "assistant":
        raise APIError(
            400,
            "continue_final_message: the last message must be the assistant's",
            param="continue_final_message",
        )
    variables = {**(special or {}), **(extra or {})}
    try:
        text = _compiled(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **variables
        )
    except TemplateError as err:
        raise APIError(400, f"messages: the chat template failed: {err}", param="messages") from err
    if continue_final_message:
        last = messages[-1].get("content") or ""
        cut = text.rfind(last.strip()) if last.strip() else -1
        if cut == -1:
            raise APIError(
                400,
                "continue_final_message: the template does not show the last message verbatim",
                param="continue_final_message",
            )
        text = text[: cut + len(last.strip())]
    return text
