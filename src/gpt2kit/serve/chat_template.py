"""Chat templates for `/v1/chat/completions`: which template, and rendering it.

The template is `--chat-template FILE` (or `create_app(chat_template=...)`), else the
tokenizer's own (`chat_template.jinja` or `tokenizer_config.json`'s `chat_template` in
the model folder, read by the tokenizer loader). Rendering is the tokenizer's
`apply_chat_template` (`gpt2kit.tokenizer.chat`: Jinja2's immutable sandbox with
transformers' variables and extras), so the server's prompt is exactly the one a user
gets from the tokenizer in Python.

There is no built-in fallback: GPT-2 was never trained on a chat format, and a silently
invented one gives plausible-looking garbage (transformers and vLLM removed their default
templates for the same reason), so a model without a template answers chat requests with
a 400 naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import APIError


def read_template_file(file: str | os.PathLike) -> str:
    """The text of `--chat-template FILE` (an error naming the file otherwise)."""
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--chat-template {file}: cannot read it: {err}") from err


def check_template(template: str) -> None:
    """Fail at start-up, not at the first request, on a template that does not parse."""
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"]).parse(template)
    except TemplateSyntaxError as err:
        raise ValueError(f"chat template does not parse: line {err.lineno}: {err}") from err


def render(
    tokenizer: Any,
    template: str | None,
    messages: list[dict[str, Any]],
    *,
    add_generation_prompt: bool,
    continue_final_message: bool = False,
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
    if continue_final_message and messages[-1].get("role") != "assistant":
        raise APIError(
            400,
            "continue_final_message: the last message must be the assistant's",
            param="continue_final_message",
        )
    from jinja2 import TemplateError

    reserved = {"messages", "tools", "documents", "add_generation_prompt"}
    clash = sorted(reserved & set(extra or {}))
    if clash:
        raise APIError(
            400,
            f"chat_template_kwargs: {clash[0]!r} is set by the server",
            param="chat_template_kwargs",
        )
    try:
        return tokenizer.apply_chat_template(
            messages,
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            tokenize=False,
            **(extra or {}),
        )
    except (TemplateError, ValueError, TypeError) as err:
        param = "continue_final_message" if "continue_final_message" in str(err) else "messages"
        raise APIError(400, f"{param}: the chat template failed: {err}", param=param) from err
