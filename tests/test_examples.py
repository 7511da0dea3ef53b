"""The README's two usage snippets (as example scripts) run and learn something."""
import importlib.util
import os

import pytest

import tfresflow as trf

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, kwargs", [("keras_style", dict(epochs=8, n=8000)),
                                          ("tfp_style", dict(epochs=8, n=8000))])
def test_readme_example_beats_gaussian(name, kwargs):
    nll = load(name).main(**kwargs)
    baseline = trf.evaluation.gaussian_baseline_nll(trf.data.sample("moons", 8000, seed=0),
                                                    trf.data.sample("moons", 2000, seed=1))
    assert nll < baseline - 0.2
