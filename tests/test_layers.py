"""The application's layers: engine -> experiments -> interfaces, and no import goes upward.

Every import counts, the ones inside functions too (a lazy import is still a dependency:
it only moves the cost to the call). Read from the source with ``ast``, nothing imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENGINE, EXPERIMENTS, INTERFACES = 0, 1, 2
# Every module of paprec_core is named here, so that a new one is placed on purpose.
ENGINE_MODULES = {"errors", "data", "tokenizer", "backbone", "prompts", "metrics", "ranking", "evaluate", "search",
                  "pretrain", "pretrain_config", "demo", "entity_init", "layout_ceiling", "holdout"}
# runs, their store and execution, the study and what turns results into tables and reports
EXPERIMENT_MODULES = {"store", "runner", "executors", "compare", "layout_choice", "pack", "study", "study_options",
                      "report"}


def layer(module: str) -> int:
    parts = module.split(".") + [""]
    if parts[0] == "dashboard" or parts[1] in ("cli", "__main__") or parts[1].startswith("cli_"):
        return INTERFACES
    if parts[1] in EXPERIMENT_MODULES:
        return EXPERIMENTS
    if parts[1] in ENGINE_MODULES or parts[1] == "":  # "": the package itself
        return ENGINE
    raise AssertionError(f"{module}: name its layer in tests/test_layers.py (engine, experiments or interfaces)")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Our modules that ``path`` imports (``paprec_core.x``, ``dashboard.y``), resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names}  # `from . import cli_runs`
    known = {module_name(p) for p in sources()}
    return {m for m in out if m in known and m != name}


def sources() -> list[Path]:
    return sorted([*(REPO / "paprec_core").rglob("*.py"), *(REPO / "dashboard").rglob("*.py")])


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sources()}


def test_no_module_imports_a_higher_layer():
    upward = [f"{a} ({layer(a)}) imports {b} ({layer(b)})"
              for a, deps in graph().items() for b in deps if layer(b) > layer(a)]
    assert not upward, "\n".join(upward)


def test_the_engine_and_experiments_have_no_import_circle():
    g = {a: {b for b in deps if b.startswith("paprec_core")} for a, deps in graph().items()
         if a.startswith("paprec_core")}
    for pkg in [m for m in g if any(o.startswith(m + ".") for o in g)]:
        g[pkg] = set()  # a package's __init__ re-exporting its own modules is no circle
    seen, stack, circles = set(), [], []

    def visit(m):
        if m in stack:
            circles.append(" -> ".join(stack[stack.index(m):] + [m]))
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(g.get(m, ())):
            visit(d)
        stack.pop()

    for m in sorted(g):
        visit(m)
    assert not circles, "\n".join(circles)


def test_the_layer_rule_sees_a_violation():
    """The checker itself: an engine module importing the CLI would be reported."""
    assert layer("paprec_core.backbone") == ENGINE and layer("paprec_core.runner") == EXPERIMENTS
    assert layer("paprec_core.cli_runs") == INTERFACES and layer("dashboard.lib.ui") == INTERFACES
    assert layer("paprec_core.report.tables") == EXPERIMENTS
    with pytest.raises(AssertionError, match="name its layer"):
        layer("paprec_core.somewhere_new")
