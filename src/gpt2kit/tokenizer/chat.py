"""Chat templates: ``apply_chat_template`` from a folder's Jinja ``chat_template``.

Why sandboxed: a chat template comes from a downloaded ``tokenizer_config.json`` (or
``chat_template.jinja``), so it is untrusted code. It runs in Jinja's
``ImmutableSandboxedEnvironment`` (no attribute access to Python internals, no
mutation of the messages), with the same extras ``transformers`` gives templates
(``raise_exception``, ``tojson``, ``strftime_now``) and the same variables (``messages``,
``tools``, ``documents``, ``add_generation_prompt`` and the special tokens), so a
template renders to the same string here and there. GPT-2 itself has no template; a
tokenizer without one raises an error that says how to pass one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from .encode import reject_unknown

_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


@lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover - jinja2 ships with the chat extra
        raise ImportError(
            "apply_chat_template needs jinja2>=3.1.6: pip install 'gpt2kit[chat]'"
        ) from e
    major, minor, patch = (int(x) for x in jinja2.__version__.split(".")[:3])
    if (major, minor, patch) < (3, 1, 6):
        raise ImportError(
            f"apply_chat_template needs jinja2>=3.1.6 (older ones have sandbox escapes); "
            f"found {jinja2.__version__}"
        )

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: Any = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


class ChatMixin:
    """``apply_chat_template`` / ``get_chat_template``."""

    chat_template: str | None

    def get_chat_template(self, chat_template: str | None = None, tools: Any = None) -> str:
        """The template to use: the argument, else the tokenizer's ``chat_template``."""
        del tools
        template = chat_template if chat_template is not None else self.chat_template
        if template is None:
            raise ValueError(
                "this tokenizer has no chat_template (GPT-2 has none): set "
                "tok.chat_template = '...' or pass chat_template= to apply_chat_template, "
                "or load a folder whose tokenizer_config.json has one"
            )
        if not isinstance(template, str):
            raise TypeError(f"chat_template must be a str, got {type(template).__name__}")
        return template

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        tools: list[dict[str, Any]] | None = None,
        documents: list[dict[str, str]] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        tokenize: bool = True,
        padding: Any = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = True,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Render a conversation with the chat template and (by default) tokenize it.

        As in ``transformers`` 5: ``tokenize=False`` returns the string; otherwise a
        :class:`BatchEncoding` (``return_dict=True``, the default) or the ids. Extra
        keyword arguments are template variables. ``return_assistant_tokens_mask`` and
        ``sanitize_control_tokens`` are not supported (an error names them), nor are
        tools given as Python functions (pass their JSON schemas).

        Example:
            >>> from gpt2kit.tokenizer import GPT2Tokenizer
            >>> tok = GPT2Tokenizer()
            >>> tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\\n{% endfor %}"
            >>> tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
            'user: hi\\n'
        """
        for name in ("return_assistant_tokens_mask", "sanitize_control_tokens"):
            if kwargs.pop(name, False):
                reject_unknown({name: True}, f"{type(self).__name__}.apply_chat_template")
        template = self.get_chat_template(chat_template, tools)
        if not isinstance(conversation, (list, tuple)) or not conversation:
            raise ValueError("conversation must be a non-empty list of {'role', 'content'} dicts")
        batched = isinstance(conversation[0], (list, tuple))
        chats = list(conversation) if batched else [conversation]
        if continue_final_message and add_generation_prompt:
            raise ValueError(
                "continue_final_message and add_generation_prompt are not compatible: the "
                "first continues the last message, the second opens a new one"
            )
        if tools is not None:
            for k, t in enumerate(tools):
                if not isinstance(t, dict):
                    raise TypeError(
                        f"tools[{k}] is {type(t).__name__}; pass each tool as its JSON schema "
                        "(a dict); Python functions are not converted here"
                    )
        if documents is not None:
            for k, d in enumerate(documents):
                if not isinstance(d, dict):
                    raise TypeError(f"documents[{k}] must be a dict with 'title' and 'text'")
        compiled = _compile(template)
        variables = {**self.special_tokens_map, **kwargs}  # type: ignore[attr-defined]
        rendered = []
        for c, chat in enumerate(chats):
            messages = []
            for m, msg in enumerate(chat):
                if not isinstance(msg, Mapping):
                    raise TypeError(
                        f"conversation[{c}][{m}] is {type(msg).__name__}; messages are dicts"
                        if batched
                        else f"conversation[{m}] is {type(msg).__name__}; messages are dicts"
                    )
                messages.append({k: v for k, v in msg.items() if v is not None})
            final = None
            if continue_final_message:
                final = messages[-1].get("content")
                if not isinstance(final, str):
                    raise ValueError(
                        "continue_final_message needs a final message with text content"
                    )
                messages[-1] = {**messages[-1], "content": final + _CONTINUE_TAG}
            text = compiled.render(
                messages=messages,
                tools=tools,
                documents=documents,
                add_generation_prompt=add_generation_prompt,
                **variables,
            )
            if final is not None:
                tag = _CONTINUE_TAG.strip()
                if final.strip() not in text or tag not in text:
                    raise ValueError(
                        "continue_final_message: the final message does not appear in the "
                        "rendered chat (the template changed it)"
                    )
                loc = text.rindex(tag)
                exact = text[loc : loc + len(_CONTINUE_TAG)] == _CONTINUE_TAG
                text = text[:loc] if exact else text[:loc].rstrip()
            rendered.append(text)
        out_text: Any = rendered if batched else rendered[0]
        if not tokenize:
            return out_text
        enc = self(  # type: ignore[operator]
            out_text,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            add_special_tokens=False,
            return_tensors=return_tensors,
            **(tokenizer_kwargs or {}),
        )
        return enc if return_dict else enc["input_ids"]
