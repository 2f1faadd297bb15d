"""The package's shape: modules import each other without a cycle, and none grows past what a reader takes in."""

import ast
import collections
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "svdkit"


def import_graph() -> dict[str, set[str]]:
    """svdkit module -> the svdkit modules it imports (at the top or inside functions); a package's own
    submodules are left out (a package gathering its parts is no dependency)."""
    modules = {}
    for f in PACKAGE.rglob("*.py"):
        name = ".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = f
    graph = collections.defaultdict(set)
    for name, f in modules.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("svdkit"):
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name
                            and not t.startswith(name + ".") and not name.startswith(t + ".")}
    return graph


def test_no_import_cycle():
    graph = import_graph()
    assert graph["svdkit.sampling"] and "svdkit.sampling" in graph["svdkit.attention"]  # the graph is read
    done, cycles = set(), []

    def visit(node, path):
        for nxt in graph.get(node, ()):
            if nxt in path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    for node in list(graph):
        visit(node, [node])
    assert not cycles, cycles


def test_no_module_over_600_lines():
    sizes = {f.relative_to(PACKAGE.parent).as_posix(): len(f.read_text().splitlines()) for f in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) > 300 and {f: n for f, n in sizes.items() if n > 600} == {}
