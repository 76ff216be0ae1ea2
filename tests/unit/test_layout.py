"""The package's layout rules (DESIGN.md): no private imports across modules, no import cycles, a Beam-free
core that imports nothing above it, and commands that never build a job never import Beam."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "osmosis_beam"


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (annotations only: never executed)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported osmosis module, names) for every executed import in ``module``, wherever it stands."""
    tree = ast.parse(MODULES[module].read_text())
    skip = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("osmosis_beam"):
            names = [a.name for a in node.names]
            found.append((node.module, names))
            # ``from pkg import submodule`` imports the submodule too
            found.extend((f"{node.module}.{n}", []) for n in names if f"{node.module}.{n}" in MODULES)
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names if a.name.startswith("osmosis_beam"))
    return found


def test_no_module_imports_another_modules_private_names():
    offenders = [
        f"{module} imports {name} from {target}"
        for module in MODULES
        for target, names in _imports(module)
        if target != module
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert offenders == []


def test_there_are_no_import_cycles():
    graph = {m: {t for t, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    # A package's __init__ importing its own modules is how a package exports; a module importing its
    # own package's __init__ only to reach a sibling is not a cycle worth the name, so edges into a
    # package __init__ from inside that package are left out.
    for m, targets in graph.items():
        graph[m] = {t for t in targets if not (MODULES[t].name == "__init__.py" and m.startswith(t + "."))}
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "active"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "active":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_core_is_beam_free_and_imports_nothing_above_it():
    problems = []
    for module, path in MODULES.items():
        if not module.startswith("osmosis_beam.core"):
            continue
        for target, _ in _imports(module):
            if not target.startswith("osmosis_beam.core"):
                problems.append(f"{module} imports {target}")
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            problems += [f"{module} imports {n}" for n in names if n.split(".")[0] == "apache_beam"]
    assert problems == []


def test_the_dead_code_and_shims_are_gone():
    for gone in ("connectors", "sinks", "pipeline", "types.py", "sync.py", "runners.py", "timefmt.py", "batches.py"):
        assert not (PACKAGE / gone).exists(), gone
    text = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    for name in ("def records_of", "_ExpressionStep", "def run_pipeline"):
        assert name not in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["connectors"],
        ["validate", "{yaml}"],
        ["validate", "--offline", "--json", "{yaml}"],
        ["history"],
        ["jobs"],
        ["sources", "list"],
        ["dead-letters", "list", "{yaml}"],
        ["init"],
        ["spec"],
        ["spec", "postgres", "--kind", "sink"],
    ],
)
def test_commands_that_build_no_job_never_import_beam(tmp_path, argv):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "id: p\nsource: {type: rss, url: 'http://127.0.0.1:9/feed.xml'}\n"
        "steps: [{filter: 'True'}, {map: {a: '1'}}, {cast: {a: int}}, {dedupe: {key: [a], cursor: a}}]\n"
        "sink: {type: jsonl, path: out}\n"
    )
    argv = [a.replace("{yaml}", str(pipeline)) for a in argv]
    (tmp_path / "home").mkdir()  # read-only commands need an existing home (they never create one)
    code = (
        "import sys, json\n"
        "from osmosis_beam.cli import main\n"
        "try:\n"
        f"    rc = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    rc = exc.code\n"
        "print(json.dumps({'rc': rc, 'beam': 'apache_beam' in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OSMOSIS_HOME": str(tmp_path / "home"), "HOME": str(tmp_path),
             # the code under test: a worktree's, when PYTHONPATH points at it
             **({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {})},
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "beam": False}, out.stderr
