"""The README's usage snippets (before "Command line") run as written, in order.

Each snippet either stands alone or says which one it continues, so running them one after
the other in one namespace is what a reader does. Only sizes are cut (epochs, examples, steps,
the image model's depth) to keep the test short; every call is the README's own.
"""
import pytest

from tests.helpers import readme_python_blocks

SMALLER = [("epochs=20", "epochs=1"), ("epochs=10", "epochs=1"), ("10_000", "1_000"),
           ("steps_per_component=500", "steps_per_component=20"),
           ("scales=3, blocks_per_scale=4", "scales=2, blocks_per_scale=1"),
           ("hidden_channels=64", "hidden_channels=8")]


@pytest.mark.slow
def test_readme_usage_snippets_run_in_order(tmp_path, monkeypatch):
    snippets = readme_python_blocks(end="## Command line")
    assert len(snippets) >= 5
    monkeypatch.chdir(tmp_path)          # they save moons.keras, mix.keras, SavedModels
    namespace = {}
    for i, code in enumerate(snippets):
        for old, new in SMALLER:
            code = code.replace(old, new)
        exec(compile(code, f"README snippet {i + 1}", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "moons.keras").exists() and (tmp_path / "mix.keras").exists()
