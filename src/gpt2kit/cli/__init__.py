"""The `gpt2kit` command: one subcommand per job, built from a command -> function table.

Each subcommand is a `register(subparsers)` function that adds its parser and sets
`func` (the function `main` calls with the parsed arguments). The jobs of other packages
(`train`, `evaluate`, `serve`) are registered by their own modules when those import;
when one does not, its subcommand stays listed and says why it is unavailable.

Only this module prints. Torch-heavy modules are imported inside the commands, so
`gpt2kit --help` and every `--help` stay quick.

Example:
    >>> main(["info", "--json"]) == 0   # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from .options import add_device_option, resolve_device

PROG = "gpt2kit"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`gpt2kit generate: error: ...`) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 1."""


# -- shared helpers ---------------------------------------------------------------------------
def _add_model_args(
    p: argparse.ArgumentParser, *, required: bool = False, default_model: bool = False
) -> None:
    help_ = "model folder or Hub id"
    if default_model:
        help_ += " (default: the embedded Tiny Shakespeare model)"
    p.add_argument("--model", "-m", required=required, default=None, help=help_)
    p.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer folder or name (default: the model's, else GPT-2's)",
    )
    add_device_option(p)
    p.add_argument(
        "--dtype", default=None, choices=["float32", "float16", "bfloat16"], help="weights dtype"
    )
    p.add_argument("--batch-size", type=int, default=8, help="inputs per forward pass (default 8)")
    p.add_argument(
        "--quantize",
        default=None,
        choices=["int8", "int4"],
        help="weight-only quantization at load (docs/quantization.md)",
    )


def _add_input_args(p: argparse.ArgumentParser, what: str = "texts") -> None:
    p.add_argument(
        "inputs", nargs="*", help=f"{what} (default: --file, else one per line from stdin)"
    )
    p.add_argument(
        "--file",
        "-f",
        default=None,
        help="read inputs from a file: one per line, or JSON objects in a .jsonl file ('-' = stdin)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object per input (JSON Lines)"
    )


def _read_lines(source: Any) -> Iterator[Any]:
    """Non-empty lines of a file object; JSON objects when a line starts with '{'."""
    for line in source:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                yield json.loads(line)
                continue
            except json.JSONDecodeError as err:
                raise CLIError(f"bad JSON line {line[:40]!r}: {err}") from err
        yield line


def _inputs(args: argparse.Namespace) -> list[Any]:
    """Inputs from the arguments, else --file, else stdin (a terminal stdin is an error)."""
    if args.inputs:
        return list(args.inputs)
    if args.file and args.file != "-":
        path = Path(args.file)
        if not path.is_file():
            raise CLIError(f"--file {args.file}: no such file")
        with path.open(encoding="utf-8") as f:
            return list(_read_lines(f))
    if args.file == "-" or not sys.stdin.isatty():
        return list(_read_lines(sys.stdin))
    raise CLIError("no input: pass it as an argument, with --file PATH, or on stdin")


def _pipeline(task: str, args: argparse.Namespace, model: Any = None, **defaults: Any) -> Any:
    from ..pipelines import pipeline

    return pipeline(
        task,
        model=model if model is not None else args.model,
        tokenizer=args.tokenizer,
        device=resolve_device(args.device),
        dtype=args.dtype,
        batch_size=args.batch_size,
        **({"quantization": args.quantize} if getattr(args, "quantize", None) else {}),
        **defaults,
    )


def _progress(results: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
    """A progress bar on stderr for long runs (hidden for a few inputs or off a terminal)."""
    if total < 16:
        return results
    from tqdm import tqdm

    return tqdm(results, total=total, desc=desc, unit="input", file=sys.stderr, disable=None)


def _run_over(pipe: Any, items: list[Any], desc: str, **options: Any) -> Iterator[tuple[Any, Any]]:
    """(input, result) pairs, computed lazily in the pipeline's batches."""
    results = pipe(iter(items), **options)
    yield from zip(items, _progress(results, len(items), desc))


def _emit(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def _short(text: Any, n: int = 60) -> str:
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _architecture(path: str) -> str:
    """The class a checkpoint's config.json names (without loading weights)."""
    from ..loading import checkpoint_class

    return checkpoint_class(path).__name__


# -- generate ---------------------------------------------------------------------------------
def _register_generate(sub: Any) -> None:
    p = sub.add_parser(
        "generate",
        help="continue a prompt (streams to the terminal)",
        description="Continue prompts with a language model. One prompt streams its text as it "
        "is generated; several are generated in batches. With no --model, the embedded Tiny "
        "Shakespeare model writes.",
        epilog="examples:\n"
        '  gpt2kit generate "ROMEO:"\n'
        '  gpt2kit generate "JULIET:" --max-new-tokens 100 --temperature 0.7 --seed 1\n'
        '  gpt2kit generate --model ./my-gpt2 --greedy --stop "\\n\\n" "Once upon a time"\n'
        "  cat prompts.txt | gpt2kit generate --json --max-new-tokens 20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_args(p, "prompts")
    _add_model_args(p, default_model=True)
    g = p.add_argument_group("decoding (defaults: the model's generation_config.json)")
    g.add_argument(
        "--max-new-tokens",
        "-n",
        type=int,
        default=None,
        help="tokens to add (default: model's, else 50)",
    )
    g.add_argument(
        "--temperature", "-t", type=float, default=None, help="sampling temperature; 0 means greedy"
    )
    g.add_argument(
        "--top-k", type=int, default=None, help="sample from the k most likely tokens (0: all)"
    )
    g.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="sample from the smallest set with this probability",
    )
    g.add_argument("--repetition-penalty", type=float, default=None, help="> 1 discourages repeats")
    g.add_argument("--num-beams", type=int, default=None, help="beam search with this many beams")
    g.add_argument("--greedy", action="store_true", help="always take the most likely token")
    g.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    g.add_argument(
        "--stop", action="append", default=None, help="stop after this string (repeatable)"
    )
    g.add_argument("--no-prompt", action="store_true", help="print only the continuation")
    p.set_defaults(func=cmd_generate)


def _generation_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for name in (
        "max_new_tokens",
        "top_k",
        "top_p",
        "repetition_penalty",
        "num_beams",
        "seed",
        "stop",
    ):
        value = getattr(args, name)
        if value is not None:
            opts[name] = value
    if args.greedy or args.temperature == 0:
        opts["do_sample"] = False
    elif args.temperature is not None or args.top_k is not None or args.top_p is not None:
        # Asking for a sampling knob means asking for sampling.
        opts["do_sample"] = True
        if args.temperature is not None:
            opts["temperature"] = args.temperature
    return opts


def cmd_generate(args: argparse.Namespace) -> int:
    prompts = _inputs(args)
    pipe = _pipeline("text-generation", args)
    opts = _generation_options(args)
    full = not args.no_prompt
    stream = len(prompts) == 1 and not args.json and (opts.get("num_beams") or 1) == 1
    if stream:
        prompt = prompts[0]
        if full:
            print(prompt, end="", flush=True)
        for piece in pipe(prompt, stream=True, **opts):
            print(piece, end="", flush=True)
        print()
        return 0
    for prompt, result in _run_over(pipe, prompts, "generating", return_full_text=full, **opts):
        texts = [r["generated_text"] for r in result]
        if args.json:
            _emit({"prompt": prompt, "generated_text": texts[0] if len(texts) == 1 else texts})
        else:
            print("\n---\n".join(texts), end="\n\n")
    return 0


# -- classify ---------------------------------------------------------------------------------
def _register_classify(sub: Any) -> None:
    p = sub.add_parser(
        "classify",
        help="label texts (fine-tuned classifier, or zero-shot with --labels)",
        description="Label texts with a text, sequence or document classifier. With --labels and "
        "a language model (default: the embedded one), classify zero-shot by scoring a "
        "hypothesis per label.",
        epilog="examples:\n"
        '  gpt2kit classify --model ./sentiment "What a lovely day"\n'
        "  gpt2kit classify --model ./sentiment --top-k 0 --json --file reviews.txt\n"
        '  gpt2kit classify --labels war,love,food "Once more unto the breach"\n'
        '  echo \'{"text": "A man plays", "text_pair": "Someone plays"}\' | gpt2kit classify -m ./nli',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_args(p, "texts (or JSON objects with text and text_pair)")
    _add_model_args(p)
    p.add_argument("--top-k", type=int, default=1, help="labels per text (0: all)")
    p.add_argument(
        "--labels", default=None, help="comma-separated labels: zero-shot classification"
    )
    p.add_argument(
        "--template", default=None, help='zero-shot hypothesis, e.g. "This text is about {}."'
    )
    p.add_argument("--multi-label", action="store_true", help="zero-shot: labels are not exclusive")
    p.set_defaults(func=cmd_classify)


def cmd_classify(args: argparse.Namespace) -> int:
    texts = _inputs(args)
    top_k = None if args.top_k == 0 else args.top_k
    if args.labels:
        from ..pipelines.base import default_model_path

        model = args.model or str(default_model_path())
        pipe = _pipeline("zero-shot-classification", args, model=model)
        opts: dict[str, Any] = {"candidate_labels": args.labels, "multi_label": args.multi_label}
        if args.template:
            opts["hypothesis_template"] = args.template
        for text, r in _run_over(pipe, texts, "classifying", **opts):
            ranked = [{"label": lab, "score": s} for lab, s in zip(r["labels"], r["scores"])]
            _print_labels(args, text, ranked if top_k is None else ranked[:top_k])
        return 0
    if not args.model:
        raise CLIError(
            "classify needs --model (a fine-tuned classifier) or --labels a,b,c for zero-shot"
        )
    task = (
        "document-classification"
        if _architecture(args.model) == "GPT2ForDocumentClassification"
        else "text-classification"
    )
    pipe = _pipeline(task, args)
    for text, r in _run_over(pipe, texts, "classifying", top_k=top_k):
        _print_labels(args, text, [r] if isinstance(r, dict) else r)
    return 0


def _print_labels(args: argparse.Namespace, text: Any, ranked: list[dict[str, Any]]) -> None:
    if args.json:
        _emit({"text": text, "labels": ranked})
    else:
        labels = "  ".join(f"{r['label']} {r['score']:.3f}" for r in ranked)
        print(f"{labels}\t{_short(text)}")


# -- tag --------------------------------------------------------------------------------------
def _register_tag(sub: Any) -> None:
    p = sub.add_parser(
        "tag",
        help="label the tokens/words of texts (NER, POS)",
        description="Tag texts with a token-classification model; entities carry character offsets.",
        epilog="examples:\n"
        '  gpt2kit tag --model ./ner "Ann Lee flew to Paris"\n'
        "  gpt2kit tag --model ./ner --aggregation first --json --file sentences.txt\n"
        '  gpt2kit tag --model ./pos --words "The cat sat"      # pre-split on spaces',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_args(p)
    _add_model_args(p, required=True)
    p.add_argument(
        "--aggregation",
        default=None,
        choices=["none", "simple", "first", "average", "max"],
        help="how tokens become entities (default simple; with --words first, so every "
        "entity is whole words)",
    )
    p.add_argument(
        "--words",
        action="store_true",
        help="inputs are words separated by spaces (one label per word)",
    )
    p.set_defaults(func=cmd_tag)


def cmd_tag(args: argparse.Namespace) -> int:
    texts = _inputs(args)
    pipe = _pipeline("token-classification", args)
    opts: dict[str, Any] = {
        "aggregation_strategy": args.aggregation or ("first" if args.words else "simple")
    }
    items: list[Any] = texts
    if args.words:
        opts["is_split_into_words"] = True
        items = [t.split() for t in texts]
    for text, ents in _run_over(pipe, items, "tagging", **opts):
        text = " ".join(text) if args.words else text
        if args.json:
            _emit({"text": text, "entities": ents})
            continue
        print(_short(text, 100))
        for e in ents:
            label = e.get("entity_group", e.get("entity"))
            print(f"  {e['start']:>4}-{e['end']:<4} {label:<10} {e['score']:.3f}  {e['word']}")
    return 0


# -- answer -----------------------------------------------------------------------------------
def _register_answer(sub: Any) -> None:
    p = sub.add_parser(
        "answer",
        help="extract answers to questions from a context",
        description="Answer questions with an extractive question-answering model. Give "
        "--question and --context (or --context-file), or JSON lines with question and context.",
        epilog="examples:\n"
        '  gpt2kit answer --model ./squad --question "Who met Bob?" --context "Ann met Bob in Paris."\n'
        '  gpt2kit answer -m ./squad --question "When?" --context-file report.txt --top-k 3\n'
        "  gpt2kit answer -m ./squad --json --file questions.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_args(p, "JSON objects with question and context")
    _add_model_args(p, required=True)
    p.add_argument("--question", "-q", default=None)
    p.add_argument("--context", "-c", default=None)
    p.add_argument("--context-file", default=None, help="read the context from this file")
    p.add_argument("--top-k", type=int, default=1, help="answers per question")
    p.add_argument(
        "--max-answer-len",
        type=int,
        default=None,
        help="longest answer, in tokens (default 30, as gpt2kit evaluate)",
    )
    p.add_argument("--doc-stride", type=int, default=None, help="tokens shared by context windows")
    p.add_argument(
        "--allow-impossible", action="store_true", help='allow "no answer" (SQuAD v2 models)'
    )
    p.set_defaults(func=cmd_answer)


def cmd_answer(args: argparse.Namespace) -> int:
    if args.context_file:
        try:
            args.context = Path(args.context_file).read_text(encoding="utf-8")
        except OSError as err:
            raise CLIError(f"--context-file: {err}") from err
    if args.question is not None or args.context is not None:
        if args.question is None or args.context is None:
            raise CLIError("give both --question and --context (or --context-file)")
        items = [{"question": args.question, "context": args.context}]
    else:
        items = _inputs(args)
        bad = [
            x for x in items if not isinstance(x, dict) or "question" not in x or "context" not in x
        ]
        if bad:
            raise CLIError(
                f"inputs must be JSON objects with question and context; got {_short(bad[0])}"
            )
    from ..tasks.qa import MAX_ANSWER_LENGTH

    pipe = _pipeline("question-answering", args)
    opts: dict[str, Any] = {
        "top_k": args.top_k,
        "max_answer_len": args.max_answer_len or MAX_ANSWER_LENGTH,
        "handle_impossible_answer": args.allow_impossible,
    }
    if args.doc_stride is not None:
        opts["doc_stride"] = args.doc_stride
    for item, r in _run_over(pipe, items, "answering", **opts):
        answers = r if isinstance(r, list) else [r]
        if args.json:
            # the question id (SQuAD's "id", if the input has one) ties the answer to its question
            qid = {"id": item["id"]} if "id" in item else {}
            _emit({**qid, "question": item["question"], "answers": answers})
        else:
            print(item["question"])
            for a in answers:
                shown = a["answer"] or "(no answer)"
                print(f"  {a['score']:.3f}  {shown}  [{a['start']}:{a['end']}]")
    return 0


# -- choose -----------------------------------------------------------------------------------
def _register_choose(sub: Any) -> None:
    p = sub.add_parser(
        "choose",
        help="pick the best of several choices (trained head, or zero-shot LM scoring)",
        description="Pick among choices with a multiple-choice model, or, with no --model or "
        "--zero-shot, by each choice's likelihood under a language model.",
        epilog="examples:\n"
        '  gpt2kit choose "ROMEO: I" --choice will --choice xylophone\n'
        '  gpt2kit choose --model ./swag "She opens the door" -c "and walks in." -c "and eats it."\n'
        '  gpt2kit choose -m ./swag --json --file items.jsonl   # {"context": ..., "choices": [...]}',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_args(p, "contexts (or JSON objects with context and choices)")
    _add_model_args(p, default_model=True)
    p.add_argument("--choice", "-c", action="append", default=None, help="a choice (repeatable)")
    p.add_argument("--zero-shot", action="store_true", help="score choices with a language model")
    p.add_argument(
        "--normalize",
        default="token",
        choices=["token", "none"],
        help="zero-shot: mean log-prob per token, or the sum",
    )
    p.set_defaults(func=cmd_choose)


def cmd_choose(args: argparse.Namespace) -> int:
    items = []
    for x in _inputs(args):
        if isinstance(x, dict):
            items.append(x)
        elif args.choice:
            items.append({"context": x, "choices": args.choice})
        else:
            raise CLIError(
                "give choices with --choice (repeatable), or JSON objects with context and choices"
            )
    zero_shot = args.zero_shot or not args.model
    if not zero_shot and _architecture(args.model) in ("GPT2LMHeadModel", "GPT2ForCausalLM"):
        zero_shot = True  # a plain LM has no choice head: score with it
    if zero_shot:
        from ..pipelines.base import default_model_path

        pipe = _pipeline("zero-shot-choice", args, model=args.model or str(default_model_path()))
        results = _run_over(pipe, items, "choosing", length_normalization=args.normalize)
    else:
        results = _run_over(_pipeline("multiple-choice", args), items, "choosing")
    for item, r in results:
        if args.json:
            _emit({**item, **r})
        else:
            ranked = sorted(zip(r["scores"], item["choices"]), reverse=True)
            print(_short(item.get("context", ""), 80))
            for score, choice in ranked:
                print(f"  {score:.3f}  {choice}")
    return 0


# -- convert ----------------------------------------------------------------------------------
def _register_convert(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="rewrite a checkpoint folder (dtype, shards, safetensors)",
        description="Load a GPT-2 checkpoint (any gpt2kit or transformers folder: safetensors, "
        "sharded safetensors or pytorch_model.bin, or a Hub id) and write it as a Hugging Face "
        "folder that transformers, vLLM and TGI load: safetensors, config.json, tokenizer and "
        "generation config.",
        epilog="examples:\n"
        "  gpt2kit convert ./ckpt ./ckpt-bf16 --dtype bfloat16\n"
        "  gpt2kit convert ./gpt2-xl ./gpt2-xl-sharded --max-shard-size 500MB\n"
        "  gpt2kit convert ./old-bin-folder ./safetensors-folder\n"
        "  gpt2kit convert ./gpt2 ./gpt2-int8 --quantize int8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="checkpoint folder or Hub id")
    p.add_argument("destination", help="folder to write (replaced atomically)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float16", "bfloat16"],
        help="default: keep the source's",
    )
    p.add_argument(
        "--max-shard-size", default="5GB", help="largest safetensors file, e.g. 500MB (default 5GB)"
    )
    p.add_argument(
        "--merge-adapter",
        nargs="?",
        const="",
        metavar="ADAPTER",
        help="merge a LoRA adapter (peft folder) into the weights and write a plain model: "
        "`convert ADAPTER_DIR OUT --merge-adapter` (base from its adapter_config.json) or "
        "`convert BASE OUT --merge-adapter ADAPTER_DIR`",
    )
    p.add_argument(
        "--quantize",
        default=None,
        choices=["int8", "int4"],
        help="write weight-only int8 / int4 weights (compressed-tensors; docs/quantization.md)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoint import parse_size
    from ..loading import load_model, load_tokenizer

    try:
        parse_size(args.max_shard_size)
    except ValueError as err:
        raise CLIError(f"--max-shard-size: {err}") from err
    if Path(args.destination).resolve() == Path(args.source).resolve():
        raise CLIError("destination must differ from source")
    merge = getattr(args, "merge_adapter", None)
    quantize = getattr(args, "quantize", None)
    if quantize and args.dtype:
        raise CLIError("--quantize and --dtype: pick one (quantized folders keep fp32 norms)")
    if quantize and merge is not None:
        raise CLIError(
            "--quantize and --merge-adapter: merge first (convert ... --merge-adapter), then "
            "quantize the merged folder"
        )
    tokenizer_source = args.source
    if merge is not None:
        from ..adapters.convert import merged_model

        try:
            model, tokenizer_source = merged_model(args.source, merge or None, load=load_model)
        except ValueError as err:
            raise CLIError(f"--merge-adapter: {err}") from err
    elif quantize:
        model = load_model(args.source, quantization=quantize)
    else:
        model = load_model(args.source, dtype="auto")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    tokenizer = load_tokenizer(None, tokenizer_source)
    out = model.save_pretrained(
        args.destination, max_shard_size=args.max_shard_size, tokenizer=tokenizer, dtype=dtype
    )
    files = sorted(f.name for f in Path(out).iterdir())
    summary = {
        "source": args.source,
        "destination": str(out),
        "architecture": type(model).__name__,
        "dtype": quantize or str(dtype or model.dtype).replace("torch.", ""),
        "files": files,
    }
    if args.json:
        _emit(summary)
    else:
        print(f"wrote {summary['architecture']} ({summary['dtype']}) to {out}: {', '.join(files)}")
    return 0


# -- info -------------------------------------------------------------------------------------
def _register_info(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="describe a checkpoint (architecture, size, labels, files)",
        description="Describe a checkpoint without running it: architecture, parameter count, "
        "layers, heads, width, context, labels, dtype and files. Default: the embedded model.",
        epilog="examples:\n  gpt2kit info\n  gpt2kit info ./my-classifier --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model", nargs="?", default=None, help="folder or Hub id (default: the embedded model)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)


_ST_DTYPES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I64": "int64",
}


def checkpoint_info(name_or_path: str) -> dict[str, Any]:
    """What `gpt2kit info` reports, read from the files (no model is built)."""
    from safetensors import safe_open

    from ..checkpoint import resolve_checkpoint_dir
    from ..config import GPT2Config
    from ..models.auto import architecture_class

    folder = Path(resolve_checkpoint_dir(name_or_path))
    config = GPT2Config.from_pretrained(folder)
    from ..models.auto import verify_checkpoint

    damage = verify_checkpoint(folder, config)  # a missing shard or key, an unreadable file
    shapes: dict[str, tuple[list[int], str]] = {}
    for f in sorted(folder.glob("*.safetensors")):
        if damage:
            break  # a damaged file's header may not read; the damage is the report
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 - safe_open is not iterable
                sl = st.get_slice(key)
                shapes[key] = (list(sl.get_shape()), _ST_DTYPES.get(sl.get_dtype(), sl.get_dtype()))
    if not shapes and not damage and (folder / "pytorch_model.bin").is_file():
        import torch

        state = torch.load(folder / "pytorch_model.bin", map_location="meta", weights_only=True)
        shapes = {k: (list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state.items()}
    n_params = 0
    for _key, (shape, _dt) in shapes.items():
        count = 1
        for s in shape:
            count *= s
        n_params += count
    dtypes = sorted({dt for _s, dt in shapes.values()})
    info: dict[str, Any] = {
        "path": str(folder),
        "architecture": architecture_class(config).__name__,
        "parameters": n_params,
        "layers": config.n_layer,
        "heads": config.n_head,
        "width": config.n_embd,
        "context": config.n_positions,
        "vocab_size": config.vocab_size,
        "tied_embeddings": bool(config.tie_word_embeddings),
        "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
        "labels": {int(k): v for k, v in (config.id2label or {}).items()}
        if config.id2label
        else None,
        "problem_type": config.problem_type,
        "files": {f.name: f.stat().st_size for f in sorted(folder.iterdir()) if f.is_file()},
        "damage": damage,
    }
    if (folder / "generation_config.json").is_file():
        info["generation_config"] = json.loads((folder / "generation_config.json").read_text())
    return info


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def cmd_info(args: argparse.Namespace) -> int:
    if args.model is None:
        from ..pipelines.base import default_model_path

        args.model = str(default_model_path())
    info = checkpoint_info(args.model)
    if args.json:
        _emit(info)
        return 1 if info["damage"] else 0
    if info["damage"]:  # a damaged folder is reported as such, never as a parameter count
        print(f"{info['path']}: the checkpoint is damaged and will not load:", file=sys.stderr)
        for problem in info["damage"]:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{info['architecture']}  ({info['path']})")
    print(
        f"  parameters   {info['parameters']:,} ({info['parameters'] / 1e6:.1f}M, stored; tied lm_head not counted twice)"
    )
    print(
        f"  layers       {info['layers']}   heads {info['heads']}   width {info['width']}   context {info['context']}"
    )
    print(
        f"  vocabulary   {info['vocab_size']}   tied embeddings: {'yes' if info['tied_embeddings'] else 'no'}"
    )
    print(f"  dtype        {info['dtype']}")
    if info["labels"]:
        print(f"  labels       {', '.join(f'{k}={v}' for k, v in info['labels'].items())}")
    if info["problem_type"]:
        print(f"  problem type {info['problem_type']}")
    if "generation_config" in info:
        print(f"  generation   {json.dumps(info['generation_config'])}")
    print("  files")
    for name, size in info["files"].items():
        print(f"    {name:<32} {_size(size):>10}")
    return 0


# -- the table --------------------------------------------------------------------------------
COMMANDS: dict[str, Callable[[Any], None]] = {
    "generate": _register_generate,
    "classify": _register_classify,
    "tag": _register_tag,
    "answer": _register_answer,
    "choose": _register_choose,
    "convert": _register_convert,
    "info": _register_info,
}

# Subcommands that other packages register: name -> module with `register(subparsers)`.
# One module may register several (training registers `train` and `evaluate`).
EXTERNAL: dict[str, str] = {
    "train": "gpt2kit.cli.train",
    "evaluate": "gpt2kit.cli.train",
    "serve": "gpt2kit.cli.serve",
}


def _register_external(sub: Any) -> None:
    failed: dict[str, str] = {}  # module -> why it could not register
    for module_name in dict.fromkeys(EXTERNAL.values()):
        try:
            importlib.import_module(module_name).register(sub)
        except Exception as err:  # noqa: BLE001 - a broken optional module must not break the CLI
            failed[module_name] = f"{module_name} could not be loaded ({type(err).__name__}: {err})"
    for name, module_name in EXTERNAL.items():
        if name not in sub.choices:
            _register_unavailable(
                sub, name, failed.get(module_name, f"{module_name} does not provide it")
            )


def _register_unavailable(sub: Any, name: str, reason: str) -> None:
    p = sub.add_parser(name, help=f"(unavailable: {reason})", description=f"unavailable: {reason}")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def unavailable(args: argparse.Namespace) -> int:
        raise CLIError(f"'{name}' is unavailable in this installation: {reason}")

    p.set_defaults(func=unavailable)


def build_parser() -> argparse.ArgumentParser:
    """The `gpt2kit` argument parser with every subcommand registered."""
    from .. import __version__

    parser = _Parser(
        prog=PROG,
        description="gpt2kit: GPT-2 models for every task. Run 'gpt2kit COMMAND --help' for a command's options.",
        epilog="examples:\n"
        '  gpt2kit generate "ROMEO:"\n'
        "  gpt2kit info\n"
        '  gpt2kit classify --labels love,war "Cry havoc"\n'
        "Add --debug anywhere to see tracebacks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gpt2kit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for register in COMMANDS.values():
        register(sub)
    _register_external(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `gpt2kit` command; returns the exit code (0 ok, 1 error, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `gpt2kit generate ... | head`
        return 0
    except Exception as err:  # noqa: BLE001 - every failure becomes one line unless --debug
        if debug:
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
