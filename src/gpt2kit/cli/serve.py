"""`gpt2kit serve`: run the HTTP server (registered into the `gpt2kit` command)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from .options import add_device_option, resolve_device


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `serve` subcommand to the `gpt2kit` command's subparsers."""
    p = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP (OpenAI-compatible completions, task endpoints, playground)",
        description="Serve a model over HTTP. See docs/serving.md for the endpoints.",
        epilog="examples:\n"
        "  gpt2kit serve                                   # the embedded model, port 8000\n"
        "  gpt2kit serve --model ./lm --port 8080 --max-batch-size 32\n"
        "  gpt2kit serve --model ./lm --adapter sql=./sql-lora --adapter chat=./chat-lora\n"
        "  gpt2kit serve --model ./ner --host 0.0.0.0      # a task model: its /v1/ endpoint\n"
        "  GPT2KIT_API_KEY=sk-... gpt2kit serve --model ./lm --chat-template chat.jinja\n"
        '  curl localhost:8000/v1/completions -d \'{"prompt": "ROMEO:", "max_tokens": 20}\'',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", default=None, help="model folder or Hub id (default: the bundled default model)"
    )
    p.add_argument(
        "--model-name", default=None, help="id reported by /v1/models (default: --model)"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)"
    )
    p.add_argument("--port", type=int, default=8000)
    add_device_option(p)
    p.add_argument(
        "--quantize", default=None, choices=["int8", "int4"], help="weight-only quantization"
    )
    p.add_argument("--max-batch-size", type=int, default=16, help="sequences decoded together")
    p.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="gathering window of an idle worker"
    )
    p.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on every path but /healthz and / "
        "(visible in `ps`: prefer --api-key-file or $GPT2KIT_API_KEY)",
    )
    p.add_argument(
        "--api-key-file", default=None, help="read the API key from this file (first line)"
    )
    p.add_argument(
        "--allowed-hosts",
        default=None,
        help="comma-separated host names accepted in the Host header (default: the loopback "
        "names when --host is loopback, which stops DNS rebinding; any otherwise)",
    )
    p.add_argument(
        "--chat-template",
        default=None,
        help="Jinja2 chat template file for /v1/chat/completions (default: the model "
        "folder's chat_template.jinja or tokenizer_config.json chat_template)",
    )
    p.add_argument(
        "--adapter",
        action="append",
        default=None,
        metavar="NAME=PATH",
        help="serve a LoRA adapter folder (PEFT format) as model NAME beside the base model "
        '(repeatable); requests pick it with "model": NAME, and rows of different adapters '
        "decode in one batch",
    )
    p.add_argument("--max-prompt-tokens", type=int, default=None, help="longest prompt accepted")
    p.add_argument("--max-tokens-cap", type=int, default=512, help="largest max_tokens accepted")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request before 504")
    p.add_argument("--queue-size", type=int, default=256, help="waiting requests before 503")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)
    return p


API_KEY_ENV = "GPT2KIT_API_KEY"


def resolve_api_key(flag: str | None, file: str | None, env: dict | None = None) -> str | None:
    """The key from `--api-key`, `--api-key-file` or `$GPT2KIT_API_KEY` (at most one).

    An empty key is an error, not "no key": `--api-key ""` from an unset shell variable
    would otherwise start an open server that its operator believes is protected.
    """
    env = os.environ if env is None else env
    sources = {
        "--api-key": flag,
        "--api-key-file": file,
        f"${API_KEY_ENV}": env.get(API_KEY_ENV),
    }
    given = {k: v for k, v in sources.items() if v is not None}
    if len(given) > 1:
        raise SystemExit(f"gpt2kit serve: give the API key one way, not {' and '.join(given)}")
    if not given:
        return None
    ((where, value),) = given.items()
    if where == "--api-key-file":
        try:
            lines = Path(value).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise SystemExit(f"gpt2kit serve: cannot read --api-key-file {file}: {err}") from err
        value = lines[0] if lines else ""
    if not value.strip():
        raise SystemExit(f"gpt2kit serve: {where} is empty; an empty key protects nothing")
    return value.strip()


def allowed_hosts_for(bind: str, flag: str | None) -> list[str] | None:
    """`Host:` names to accept: `--allowed-hosts`, else loopback names for a loopback bind.

    A server on 127.0.0.1 is reachable from any web page the user opens, through a DNS
    name the attacker rebinds to 127.0.0.1; such requests carry the attacker's name in
    `Host:`, so accepting only loopback names stops them.
    """
    from ..serve.guard import LOOPBACK_HOSTS, is_loopback

    if flag is not None:
        return [h.strip() for h in flag.split(",") if h.strip()]
    return list(LOOPBACK_HOSTS) if is_loopback(bind) else None


def run(args: argparse.Namespace) -> int:
    """Build the app from parsed arguments and serve until interrupted (graceful on SIGTERM)."""
    try:
        import uvicorn
    except ImportError as err:
        raise SystemExit(
            "gpt2kit serve needs the serve extra: pip install 'gpt2kit[serve]'"
        ) from err
    # (FastAPI and jinja2, the serve extra, load only when the command runs: `gpt2kit --help`
    # and the other commands work without them)
    from ..serve.adapters import AdapterSpecError, parse_adapter_args
    from ..serve.app import create_app
    from ..serve.chat_template import read_template_file

    logging.getLogger("gpt2kit").setLevel(args.log_level.upper())
    allowed = allowed_hosts_for(args.host, args.allowed_hosts)
    try:
        adapters = parse_adapter_args(getattr(args, "adapter", None))
    except AdapterSpecError as err:
        raise SystemExit(f"gpt2kit serve: {err}") from err
    app = _adapter_errors_exit(create_app)(
        args.model,
        model_name=args.model_name,
        max_batch_size=args.max_batch_size,
        api_key=resolve_api_key(args.api_key, args.api_key_file),
        allowed_hosts=allowed,
        chat_template=read_template_file(args.chat_template) if args.chat_template else None,
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens_cap=args.max_tokens_cap,
        timeout=args.timeout,
        queue_size=args.queue_size,
        max_body_bytes=args.max_body_bytes,
        batch_wait_ms=args.batch_wait_ms,
        device=resolve_device(args.device),
        adapters=adapters,
        quantization=args.quantize,
    )
    # uvicorn stops accepting on SIGINT/SIGTERM, lets open requests (streams included)
    # finish for up to 30 s, then runs the app's shutdown, which drains the batcher.
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=30
    )
    return 0


def _adapter_errors_exit(fn: Any) -> Any:
    """`fn` with a bad `--adapter` folder turned into a one-line exit naming the flag."""
    from ..adapters import AdapterConfigError, AdapterError
    from ..serve.adapters import AdapterSpecError

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (AdapterSpecError, AdapterError, AdapterConfigError) as err:
            raise SystemExit(f"gpt2kit serve: --adapter: {err}") from err

    return call
