"""The layering of ARCHITECTURE.md, enforced on the import graph of every module of bifsmn_cli/ and stages/ (read
with ast, so imports inside functions count too), and the paths that must not load torch.

- the library (bifsmn_cli/ but the commands) imports neither `stages` nor `bifsmn_cli.commands`;
- only `bifsmn_cli.commands` imports `stages`;
- no module imports a stage module (the registry loads them by name), so no stage imports another;
- no two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from stages.pipeline.registry import STAGES

Graph = dict[str, set[str]]
STAGE_MODULES = set(STAGES.values())


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The known modules `tree` imports: `from pkg import mod` names the submodule when there is one."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = ROOT) -> Graph:
    paths = {_module_name(p, root): p for pkg in ("bifsmn_cli", "stages") for p in (root / pkg).rglob("*.py")}
    known = set(paths)
    return {
        name: _imports(ast.parse(path.read_text()), name, path.name == "__init__.py", known)
        for name, path in paths.items()
    }


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _command(module: str) -> bool:
    """The command layer: the Typer app and `python -m bifsmn_cli`, which runs it."""
    return _within(module, "bifsmn_cli.commands") or module == "bifsmn_cli.__main__"


def library_violations(graph: Graph) -> list[tuple[str, str]]:
    """Library modules that import the stages or the commands."""
    return [
        (m, d)
        for m, deps in graph.items()
        if _within(m, "bifsmn_cli") and not _command(m)
        for d in deps
        if _within(d, "stages") or _command(d)
    ]


def stages_importers(graph: Graph) -> set[str]:
    """The modules outside `stages` that import it."""
    return {
        m for m, deps in graph.items() if not _within(m, "stages") and any(_within(d, "stages") for d in deps)
    }


def stage_module_importers(graph: Graph) -> list[tuple[str, str]]:
    return [(m, d) for m, deps in graph.items() for d in deps if d in STAGE_MODULES]


def cycles(graph: Graph) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph()


def test_the_graph_is_read(graph):
    assert {"bifsmn_cli.commands", "stages.pipeline.runner", *STAGE_MODULES} <= set(graph)
    assert "bifsmn_cli.nn.dfsmn" in graph["bifsmn_cli.export.lowering"]  # a top-level import
    assert "stages.shared.training" in graph["stages.distill"]  # an import inside a function


def test_the_library_imports_neither_stages_nor_the_commands(graph):
    assert library_violations(graph) == []


def test_only_the_commands_import_stages(graph):
    assert stages_importers(graph) == {"bifsmn_cli.commands.pipeline", "bifsmn_cli.commands.reproduce"}


def test_no_module_imports_a_stage_module(graph):
    assert stage_module_importers(graph) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_each_rule_catches_a_forbidden_import(graph):
    """The checks above on the real graph with one bad import added: each reports it."""
    bad = {m: set(d) for m, d in graph.items()}
    bad["bifsmn_cli.nn.dfsmn"].add("stages.pipeline.runner")
    bad["stages.bench"].add("stages.export")
    bad["bifsmn_cli.engine.build"].add("bifsmn_cli.engine.binding")
    assert ("bifsmn_cli.nn.dfsmn", "stages.pipeline.runner") in library_violations(bad)
    assert "bifsmn_cli.nn.dfsmn" in stages_importers(bad)
    assert ("stages.bench", "stages.export") in stage_module_importers(bad)
    assert ["bifsmn_cli.engine.binding", "bifsmn_cli.engine.build"] in cycles(bad)


def test_a_source_file_with_a_forbidden_import_is_caught(tmp_path):
    """From source text too: a library module that imports a stage inside a function."""
    for pkg in ("bifsmn_cli", "stages"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "stages" / "download.py").write_text("")
    (tmp_path / "bifsmn_cli" / "lib.py").write_text("def f():\n    return 1\n")
    assert library_violations(import_graph(tmp_path)) == []
    (tmp_path / "bifsmn_cli" / "lib.py").write_text("def f():\n    from stages import download\n")
    assert ("bifsmn_cli.lib", "stages.download") in library_violations(import_graph(tmp_path))


# ------------------------------------------------------------------------------------------------- no torch

PROBE = """
import sys
from bifsmn_cli.commands import main
sys.argv = ["bifsmn", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
print("torch imported" if "torch" in sys.modules else "torch not imported", file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    "args", [["--help"], ["status", "-c", "pipelines/quickstart.yaml"], ["distill", "--help"]]
)
def test_help_and_status_do_not_import_torch(tmp_path, args):
    """Reading a pipeline (its schema comes from every stage's spec), `status` and `--help` stay light."""
    if "status" in args:
        args = [*args, "--set", f"workspace={tmp_path / 'ws'}"]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("torch not imported"), done.stderr


def test_the_library_api_loads_on_first_use():
    code = (
        "import sys, bifsmn_cli\n"
        "cfg = bifsmn_cli.ModelConfig(num_blocks=4)\n"
        "assert 'torch' not in sys.modules and 'bifsmn_cli.commands' not in sys.modules\n"
        "from bifsmn_cli import DFSMN, Engine, Library, load_model\n"
        "assert DFSMN(cfg).cfg.num_blocks == 4 and 'torch' in sys.modules\n"
        "assert 'bifsmn_cli.commands' not in sys.modules and 'stages' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
