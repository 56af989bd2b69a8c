"""The package's architecture: no import cycle among its modules, a workflow
parse that imports neither torch nor the trainer, and modules of a readable
length."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "musicsep"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that the module ``name`` at ``path`` imports,
    anywhere in it (at module level, in functions, under conditions).
    ``from a import b`` imports a, and a.b where that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:                                   # relative: from . import x, from ..a import b
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(path, name, set(found)) - {name} for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    source = PACKAGE / "workflow" / "plan.py"
    assert {"musicsep", "musicsep.data.musdb", "musicsep.workflow.config"} <= \
        imported(source, "musicsep.workflow.plan", set(modules()))


def test_no_import_cycle_among_the_package_modules():
    graph = import_graph()
    assert len(graph) > 40 and sum(map(len, graph.values())) > 80   # the package, read whole
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


PARSE = """
import json, sys
from pathlib import Path
from snakemake.utils import update_config
from musicsep.workflow.config import load_yaml
from musicsep.workflow.plan import experiment_specs, load_config, plan

root = Path(sys.argv[1])
config = load_yaml(root / "config" / "config.yaml")
update_config(config, load_yaml(root / "config" / "toy.yaml"))     # as --configfile layers them
config = load_config(config, root)
tracks, specs = plan(config).tracks, experiment_specs(config)
print(json.dumps({"tracks": len(tracks), "experiments": sorted(specs),
                  "modules": sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "musicsep")))}))
"""


def test_the_workflow_parse_imports_neither_torch_nor_the_trainer():
    """What rules/common.smk does at every Snakemake start (every job's too):
    the config, the track table and the experiments' specs, without torch."""
    proc = subprocess.run([sys.executable, "-c", PARSE, str(ROOT)], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    parsed = json.loads(proc.stdout)
    assert parsed["tracks"] == 11 and parsed["experiments"] == ["baseline", "centroids", "dpcl"]
    loaded = parsed["modules"]
    assert "musicsep.workflow.plan" in loaded
    assert "torch" not in loaded, [m for m in loaded if m.startswith("torch")][:5]
    assert not [m for m in loaded if m == "musicsep.train" or m.startswith("musicsep.train.")], loaded


def test_no_module_is_longer_than_400_lines():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert lengths["musicsep.cli"] > 100                                 # every module was read
    over = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them by what they do): {over}"
