"""`gpt2kit serve`: run the HTTP server (registered into the `gpt2kit` command)."""

from __future__ import annotations

import argparse
import logging


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `serve` subcommand to the `gpt2kit` command's subparsers."""
    p = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP (OpenAI-compatible completions, task endpoints, playground)",
        description="Serve a model over HTTP. See docs/serving.md for the endpoints.",
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
    p.add_argument("--device", default=None, help="torch device for the model (default: cpu)")
    p.add_argument(
        "--quantize", default=None, choices=["int8", "int4"], help="weight-only quantization"
    )
    p.add_argument("--max-batch-size", type=int, default=16, help="sequences decoded together")
    p.add_argument(
        "--batch-wait-ms", type=float, default=5.0, help="gathering window of an idle worker"
    )
    p.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/* and /metrics"
    )
    p.add_argument("--max-prompt-tokens", type=int, default=None, help="longest prompt accepted")
    p.add_argument("--max-tokens-cap", type=int, default=512, help="largest max_tokens accepted")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request before 504")
    p.add_argument("--queue-size", type=int, default=256, help="waiting requests before 503")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build the app from parsed arguments and serve until interrupted (graceful on SIGTERM)."""
    try:
        import uvicorn
    except ImportError as err:
        raise SystemExit(
            "gpt2kit serve needs the serve extra: pip install 'gpt2kit[serve]'"
        ) from err
    from .app import create_app

    logging.getLogger("gpt2kit").setLevel(args.log_level.upper())
    app = create_app(
        args.model,
        model_name=args.model_name,
        max_batch_size=args.max_batch_size,
        api_key=args.api_key,
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens_cap=args.max_tokens_cap,
        timeout=args.timeout,
        queue_size=args.queue_size,
        max_body_bytes=args.max_body_bytes,
        batch_wait_ms=args.batch_wait_ms,
        device=args.device,
        quantization=args.quantize,
    )
    # uvicorn stops accepting on SIGINT/SIGTERM, lets open requests (streams included)
    # finish for up to 30 s, then runs the app's shutdown, which drains the batcher.
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=30
    )
    return 0
