"""The import graph of `gpt2kit` stays layered (docs/architecture.md).

Computed from the source with `ast` (no module is imported): every `import` and `from ...
import` of a gpt2kit module, at module level or inside a function, is an edge between the
packages (`gpt2kit.<package>...`) of the two modules. The package graph must have no cycle,
every edge must go from a higher layer to a strictly lower one, and function-level imports
of gpt2kit modules may only appear where they exist for import cost (the command-line and
server entry points), never to dodge a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gpt2kit"

# Layer of each top-level package or module of gpt2kit, lowest first. An import may only go
# to a strictly lower layer. A new package needs a row here (and in docs/architecture.md).
LAYERS: dict[str, int] = {
    "gpt2kit": 0,  # the root: PEP 562 lazy names, imports nothing at module level
    "errors": 0,
    "hub": 0,
    "config_checks": 0,
    "native": 0,  # the C kernels and their ctypes bindings: imports only torch
    "tasks": 0,  # the task registry names classes by import path: it imports none of them
    "evaluation": 1,  # metrics, scored per task family (from the registry)
    "config": 1,
    "tokenizer": 1,
    "data": 2,
    "checkpoint": 2,
    "adapters": 3,  # LoRA wrappers and folders; `AdapterMixin` is a base of GPT2PreTrainedModel
    "quantization": 3,  # int8/int4 modules and folders; nn.base and decode import it
    "nn": 4,  # the backbone layer: backbone, base, cache, outputs, activations
    "decode": 5,
    "generation": 6,
    "models": 7,  # the task heads (heads that generate import generation)
    "loading": 8,  # the one model-and-tokenizer resolver of the entry points
    "pipelines": 9,
    "training": 9,
    "serve": 10,
    "cli": 11,  # the one CLI package: gpt2kit, train, evaluate, serve, ...
    "__main__": 12,
}

# Modules whose function-level imports of gpt2kit modules exist for import cost: the
# `gpt2kit` command registers every subcommand and must start without torch, FastAPI or
# jinja2; the server loads its optional extras only when it runs; the root resolves its
# public names on first use (PEP 562).
LAZY_ALLOWED = {
    "gpt2kit.cli",
    "gpt2kit.cli.train",
    "gpt2kit.cli.serve",
    "gpt2kit.training.arguments",
    "gpt2kit.serve",
    "gpt2kit.serve.app",
    "gpt2kit.serve.tasks",
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        mods[name] = path
    return mods


def _known(name: str, mods: dict[str, Path]) -> str | None:
    """The module `name` is, or the nearest enclosing package that exists as a file
    (`gpt2kit.models.backbone`, an alias of `gpt2kit.nn.backbone`, counts as
    `gpt2kit.models`); None outside gpt2kit."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in mods:
            return candidate
        parts.pop()
    return None


def _targets(module: str, node: ast.AST, mods: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            if mods[module].name != "__init__.py":
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = [target] + [f"{target}.{a.name}" for a in node.names]
    else:
        names = [a.name for a in node.names]  # type: ignore[attr-defined]
    found = []
    for name in names:
        if not name.startswith("gpt2kit"):
            continue
        hit = name if name in mods else None
        if hit is None and name == names[0]:
            hit = _known(name, mods)
        if hit is not None and hit != module:
            found.append(hit)
    return found


def _is_top_level(node: ast.AST, tree: ast.Module) -> bool:
    if node in tree.body:
        return True
    return any(
        node in getattr(n, "body", []) or node in getattr(n, "orelse", [])
        for n in tree.body
        if isinstance(n, (ast.If, ast.Try))
    ) or any(node in h.body for n in tree.body if isinstance(n, ast.Try) for h in n.handlers)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gpt2kit"


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """(package -> packages it imports, module-level edges, function-level edges)."""
    mods = _modules()
    packages: dict[str, set[str]] = {}
    edges: list[tuple[str, str]] = []
    lazy: list[tuple[str, str]] = []
    for module, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        packages.setdefault(_layer(module), set())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(module, node, mods):
                edges.append((module, target))
                if _layer(target) != _layer(module):
                    packages[_layer(module)].add(_layer(target))
                if not _is_top_level(node, tree):
                    lazy.append((module, target))
    return packages, edges, lazy


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_package_import_graph_has_no_cycle():
    packages, _, _ = import_graph()
    assert _cycles(packages) == []


def test_every_package_has_a_layer():
    packages, _, _ = import_graph()
    unknown = sorted(set(packages) - set(LAYERS))
    assert not unknown, f"add {unknown} to LAYERS here and to docs/architecture.md"


def test_lower_layers_never_import_upper_ones():
    _, edges, _ = import_graph()
    upward = sorted(
        {
            (a, b)
            for a, b in edges
            if _layer(a) != _layer(b) and LAYERS.get(_layer(b), 99) >= LAYERS.get(_layer(a), 99)
        }
    )
    assert not upward, "imports against the layers (docs/architecture.md): " + ", ".join(
        f"{a} -> {b}" for a, b in upward
    )


def test_backbone_layer_imports_no_head_generation_or_decode():
    _, edges, _ = import_graph()
    bad = [
        (a, b)
        for a, b in edges
        if _layer(a) == "nn" and _layer(b) in {"models", "generation", "decode"}
    ]
    assert not bad
    bad = [
        (a, b) for a, b in edges if _layer(a) in {"generation", "decode"} and _layer(b) == "models"
    ]
    assert not bad, "generation and decode import the backbone layer (gpt2kit.nn), never heads"


def test_function_level_imports_only_for_import_cost():
    _, _, lazy = import_graph()
    dodges = sorted({(a, b) for a, b in lazy if a not in LAZY_ALLOWED})
    assert not dodges, (
        "function-level imports of gpt2kit modules outside the entry points (import at "
        "module level; a cycle means a module is in the wrong layer): "
        + ", ".join(f"{a} -> {b}" for a, b in dodges)
    )


@pytest.mark.parametrize("name", ["backbone", "base", "cache", "outputs"])
def test_old_module_names_are_the_backbone_modules(name):
    import importlib

    old = importlib.import_module(f"gpt2kit.models.{name}")
    new = importlib.import_module(f"gpt2kit.nn.{name}")
    assert old is new


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _head_counter():
    import importlib.util

    path = SRC.parents[1] / "scripts" / "count_head_lines.py"
    spec = importlib.util.spec_from_file_location("count_head_lines", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_code_line_counter_skips_docstrings_comments_and_blanks():
    count = _head_counter().code_lines
    source = '"""Module doc."""\n\n# comment\ndef f(x):\n    """Doc\n    more."""\n    return (\n        x  # why\n    )\n'
    assert count(source) == 4  # def, return (, x, )


def test_head_files_a_quarter_shorter_and_mirror_heads_small():
    counter = _head_counter()
    counts = counter.head_lines()
    total = sum(counts.values())
    assert total <= counter.TARGET * counter.BASELINE_HEAD_LINES, (
        f"head files: {total} code lines, more than {counter.TARGET:.0%} of the "
        f"{counter.BASELINE_HEAD_LINES} at {counter.BASELINE} (python scripts/count_head_lines.py)"
    )
    big = {n: counts[n] for n in counter.MIRROR_HEADS if counts[n] > counter.MIRROR_LIMIT}
    assert not big, f"mirror heads over {counter.MIRROR_LIMIT} code lines: {big}"


def test_head_line_baseline_matches_git_history():
    import subprocess

    counter = _head_counter()
    try:
        subprocess.run(
            ["git", "cat-file", "-e", f"{counter.BASELINE}^{{commit}}"],
            cwd=SRC.parents[1],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"git history without {counter.BASELINE} (a shallow clone)")
    assert sum(counter.head_lines(counter.BASELINE).values()) == counter.BASELINE_HEAD_LINES


def _fresh_modules(statement: str) -> list[str]:
    """gpt2kit modules loaded in a fresh interpreter after `statement` (this checkout's)."""
    import json
    import os
    import subprocess
    import sys

    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('gpt2kit'))))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_importing_a_head_loads_no_generation_loop_or_decoder():
    """Import cost (docs/architecture.md): the heads import `gpt2kit.generation` for
    `GenerationConfig` only; the loops, beam search and `gpt2kit.decode` load on the first
    `generate`, and importing the package loads nothing."""
    assert _fresh_modules("import gpt2kit") == ["gpt2kit"]
    loaded = _fresh_modules(
        "from gpt2kit import GPT2LMHeadModel, GPT2ForSequenceClassification, GPT2DoubleHeadsModel"
    )
    assert "gpt2kit.models.lm" in loaded and "gpt2kit.generation.config" in loaded
    heavy = [m for m in loaded if m.startswith(("gpt2kit.decode", "gpt2kit.generation.search"))]
    assert not heavy
    assert not [
        m for m in _fresh_modules("import gpt2kit.models.token_classification") if m.endswith(".lm")
    ]
    assert "gpt2kit.generation.search" in _fresh_modules("from gpt2kit import generate")


@pytest.mark.parametrize("name", ["gpt2kit", "gpt2kit.generation", "gpt2kit.models"])
def test_lazy_names_resolve_and_are_listed(name):
    import importlib

    module = importlib.import_module(name)
    assert set(module.__all__) <= set(dir(module))
    for attribute in module.__all__:
        assert getattr(module, attribute) is not None, attribute
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018
