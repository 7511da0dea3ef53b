"""The package's import structure: imports point down the layers only, and no module circle.

Layers (DESIGN.md), top to bottom; a module may import its own layer and any lower one:

    cli > models, export, evaluation, plotting > boosting > distributions > bijectors
        > logdet, solvers > nets > lipschitz, data > registry, validation, random, io, _compat

Every ``import tfresflow...`` counts, also the lazy ones inside functions (the CLI's).
"""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "tfresflow"

LAYERS = [
    {"registry", "validation", "random", "io", "_compat", "optimizers"},
    {"lipschitz", "data", "activations"},  # activations: the former home, a re-export
    {"nets"},
    {"logdet", "solvers"},
    {"bijectors"},
    {"distributions"},
    {"boosting"},
    {"models", "export", "evaluation", "plotting"},
    {"cli"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(path, module):
    """``(imported tfresflow module, at top level)`` pairs of one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(id(n) for n in tree.body)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("tfresflow."):
                yield name, id(node) in top


def _layer(module):
    return module.split(".")[1]


def test_every_subpackage_has_a_layer():
    assert {_layer(m) for m, _ in _modules() if m != "tfresflow"} <= set(RANK)


def test_imports_point_down_the_layers():
    upward = []
    for module, path in _modules():
        if module == "tfresflow":
            continue
        for target, _ in _imports(path, module):
            if _layer(target) in RANK and RANK[_layer(target)] > RANK[_layer(module)]:
                upward.append(f"{module} imports {target}")
    assert not upward, upward


def test_no_import_circle_between_modules():
    known = {m for m, _ in _modules()}
    graph = {}
    for module, path in _modules():
        targets = set()
        for target, top_level in _imports(path, module):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]  # `from pkg.mod import name`
            if top_level and target != module and target in known and target != "tfresflow":
                targets.add(target)
        graph[module] = targets
    # Package __init__ files import their own submodules: that is a face, not a circle.
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    state, cycle = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycle, cycle
