"""Running the ``tfresflow`` command in a fresh Python process, as a user does.

* :func:`run_cli`: ``python -m tfresflow.cli ARGV`` -> ``CompletedProcess`` (exit code, output);
* :func:`run_cli_many`: several commands in one fresh process (one TensorFlow import for all),
  each through :func:`tfresflow.cli.main`, with its exit code and stderr;
* :func:`imports_after`: which heavy libraries a command imported before it exited.

The child process sees this checkout's ``tfresflow`` first on ``PYTHONPATH`` and none of the
test suite's configuration (no ``conftest.py``: TensorFlow's logging is as a user gets it,
unless ``env`` says otherwise).
"""
import json
import os
import subprocess
import sys

import tfresflow

PACKAGE_DIR = os.path.dirname(os.path.abspath(tfresflow.__file__))
HEAVY = ("tensorflow", "keras", "tensorflow_probability", "tf_keras", "matplotlib")


def cli_env(**extra):
    """The environment of a child process: this checkout first on ``PYTHONPATH``, TF's own log
    level unset (``extra`` adds or, with ``None``, removes variables)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(PACKAGE_DIR)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(argv, cwd=None, timeout=300, **env):
    """``python -m tfresflow.cli *argv`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "tfresflow.cli", *map(str, argv)],
                          env=cli_env(**env), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


_MANY = """
import contextlib, io, json, sys
import tfresflow.cli
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = tfresflow.cli.main(argv)
        except SystemExit as stop:   # argparse errors
            code = stop.code
    results.append({"argv": argv, "code": code, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def run_cli_many(argvs, cwd=None, timeout=600):
    """Runs each argument list through ``tfresflow.cli.main`` in one fresh process; returns a
    list of ``{"argv", "code", "stderr"}`` dicts."""
    done = subprocess.run([sys.executable, "-c", _MANY, json.dumps([list(map(str, a))
                                                                    for a in argvs])],
                          env=cli_env(), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


_IMPORTS = """
import json, runpy, sys
names = set(json.loads(sys.argv[2]))
sys.argv = ["tfresflow"] + json.loads(sys.argv[1])
try:
    runpy.run_module("tfresflow.cli", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as stop:
    code = stop.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & names)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.__stderr__)
"""


def imports_after(argv, cwd=None):
    """``(exit code, heavy libraries imported)`` of ``tfresflow *argv`` run in a fresh process
    (``python -m tfresflow.cli`` semantics, through ``runpy``)."""
    done = subprocess.run([sys.executable, "-c", _IMPORTS, json.dumps(list(map(str, argv))),
                           json.dumps(HEAVY)], env=cli_env(), cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], report["heavy"]
