"""The ``tfresflow`` entry point: ``python -m tfresflow.cli``, no import circle, no TF to parse."""
import ast
import os
import subprocess
import sys

import tfresflow

PACKAGE_DIR = os.path.dirname(os.path.abspath(tfresflow.__file__))
CLI_DIR = os.path.join(PACKAGE_DIR, "cli")
HEAVY = ("tensorflow", "keras", "tensorflow_probability", "tf_keras", "matplotlib")


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(PACKAGE_DIR)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _imported_modules(path, known=()):
    """Names of the ``tfresflow`` modules ``path`` imports (anywhere in the file).

    ``from P import a`` counts as importing ``P.a`` when that is one of the ``known`` modules,
    else as importing ``P`` (absolute imports only: the package uses no relative ones).
    """
    names = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in {path}"
            subs = {f"{node.module}.{a.name}" for a in node.names}
            names.update(subs & set(known) if subs <= set(known) else {node.module} | subs)
    return {n for n in names if n == "tfresflow" or n.startswith("tfresflow.")}


def _cli_modules():
    return {f"tfresflow.cli.{f[:-3]}" if f != "__init__.py" else "tfresflow.cli":
            os.path.join(CLI_DIR, f) for f in os.listdir(CLI_DIR) if f.endswith(".py")}


def test_python_dash_m_help_lists_every_command():
    done = subprocess.run([sys.executable, "-m", "tfresflow.cli", "--help"], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for command in ("train", "evaluate", "sample", "match"):
        assert command in done.stdout


def test_parsing_imports_no_tensorflow():
    """Parsing every command's ``--help`` imports neither TF, Keras, TFP nor matplotlib (the
    package root is lazy, so this holds for the real ``import tfresflow.cli``)."""
    script = f"""
import sys
import tfresflow.cli
for command in ("train", "evaluate", "sample", "match"):
    try:
        tfresflow.cli.build_parser().parse_args([command, "--help"])
    except SystemExit:
        pass
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))
"""
    done = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_cli_modules_import_each_other_without_a_circle():
    modules = _cli_modules()
    graph = {name: {m for m in _imported_modules(path, modules) if m in modules} - {name}
             for name, path in modules.items()}

    def visit(name, stack):
        assert name not in stack, f"import circle: {' -> '.join(stack + [name])}"
        for dep in graph[name]:
            visit(dep, stack + [name])

    for name in graph:
        visit(name, [])


def test_nothing_below_the_cli_imports_it():
    for folder, _, files in os.walk(PACKAGE_DIR):
        if os.path.commonpath([folder, CLI_DIR]) == CLI_DIR:
            continue
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                assert not any(m.startswith("tfresflow.cli") for m in
                               _imported_modules(path)), path
    assert not os.path.exists(os.path.join(PACKAGE_DIR, "cli_boosted.py"))


def test_n_steps_and_its_deprecated_old_spelling(capsys):
    from tfresflow.cli import build_parser

    for command in (["train"], ["match", "--energy", "U1"]):
        args = build_parser().parse_args(command + ["--n-steps", "3"])
        assert args.n_steps == 3 and not hasattr(args, "flow_steps")
        assert "deprecated" not in capsys.readouterr().err
        args = build_parser().parse_args(command + ["--flow-steps", "5"])
        assert args.n_steps == 5
        err = capsys.readouterr().err
        assert "`--flow-steps` is deprecated" in err and "use `--n-steps`" in err
        assert len(err.strip().splitlines()) == 1
    assert build_parser().parse_args(["train"]).n_steps is None
    assert build_parser().parse_args(["match", "--energy", "U1"]).n_steps == 4
    try:
        build_parser().parse_args(["train", "--n-steps", "0"])
    except SystemExit as stop:
        assert stop.code == 2
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


def test_help_names_the_deprecated_spelling(capsys):
    from tfresflow.cli import build_parser

    for command in ("train", "match"):
        try:
            build_parser().parse_args([command, "--help"])
        except SystemExit:
            pass
        out = " ".join(capsys.readouterr().out.split())
        assert "--n-steps N, --flow-steps N" in out and "`--flow-steps` is its deprecated" in out
