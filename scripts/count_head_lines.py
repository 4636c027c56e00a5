"""Code lines of the task-head files (issue 17, item 2), now or at a git revision.

A code line is a source line holding a token that is not a comment: blank lines, comment
lines and docstrings (the first string statement of a module, class or function) do not
count; a statement spread over several lines counts each of them.

The head files are the modules of `gpt2kit.models` that define a task head:
`HEAD_FILES` below. `conditional_generation.py` (the `EncoderDecoderModel` layout) is
listed on its own: it follows a different convention and is not part of the figure.
The shared modules the heads import (`arguments`, `losses`, `pooling`,
`generation_mixin`) are reported beside them, so what moved down stays visible.

The baseline is `BASELINE` (52979fa: the last commit before issue 17's work began, the
decode seam; the heads were redone after it). `tests/test_architecture.py` imports
`code_lines`/`head_lines` and checks the figure against `BASELINE_HEAD_LINES`.

Usage:
    python scripts/count_head_lines.py            # the working tree against the baseline
    python scripts/count_head_lines.py REV [REV]  # one or two git revisions
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = "src/gpt2kit/models"

HEAD_FILES = (
    "lm",
    "double_heads",
    "sequence_classification",
    "token_classification",
    "question_answering",
    "multiple_choice",
    "text_classification",
    "document_classification",
    "seq2seq",
)
# The four heads that mirror transformers' classes; each at most MIRROR_LIMIT code lines.
MIRROR_HEADS = (
    "sequence_classification",
    "token_classification",
    "question_answering",
    "multiple_choice",
)
MIRROR_LIMIT = 45
OTHER_FILES = ("conditional_generation",)
SHARED_FILES = ("arguments", "losses", "pooling", "generation_mixin")

BASELINE = "52979fa"
BASELINE_HEAD_LINES = 790  # HEAD_FILES at BASELINE (this script; git is not needed for it)
TARGET = 0.75  # at least 25% fewer


def code_lines(source: str) -> int:
    """Lines of `source` with a token that is neither a comment nor part of a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = body[0] if body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            docstrings.update(range(first.lineno, first.end_lineno + 1))
    skip = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
    }
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - docstrings)


def _source(name: str, rev: str | None) -> str | None:
    if rev is None:
        path = ROOT / MODELS / f"{name}.py"
        return path.read_text(encoding="utf-8") if path.exists() else None
    try:
        return subprocess.run(
            ["git", "show", f"{rev}:{MODELS}/{name}.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError:
        return None


def head_lines(rev: str | None = None, names: tuple[str, ...] = HEAD_FILES) -> dict[str, int]:
    """Code lines per file of `names` in the working tree (`rev=None`) or at `rev`;
    a file missing there counts 0."""
    out = {}
    for name in names:
        source = _source(name, rev)
        out[name] = code_lines(source) if source is not None else 0
    return out


def _report(revs: list[str | None]) -> None:
    labels = [r or "worktree" for r in revs]
    groups = (("head files", HEAD_FILES), ("not counted", OTHER_FILES), ("shared", SHARED_FILES))
    print(f"{'file':28s}" + "".join(f"{label:>12s}" for label in labels))
    for title, names in groups:
        counts = [head_lines(r, names) for r in revs]
        for name in names:
            print(f"{name:28s}" + "".join(f"{c[name]:12d}" for c in counts))
        print(f"{'= ' + title:28s}" + "".join(f"{sum(c.values()):12d}" for c in counts))
    if len(revs) == 2:
        before, after = (sum(head_lines(r).values()) for r in revs)
        print(f"head files: {before} -> {after} code lines ({(after - before) / before:+.1%})")


if __name__ == "__main__":
    args = sys.argv[1:]
    _report([args[0], args[1]] if len(args) == 2 else [args[0]] if args else [BASELINE, None])
