"""Argument types of the command line (``tfresflow.cli.arguments``)."""
import argparse

import pytest

from tfresflow.cli import arguments


def test_integer_types():
    assert arguments.positive_int("3") == 3 and arguments.nonnegative_int("0") == 0
    for text in ("0", "-1", "2.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive integer"):
            arguments.positive_int(text)
    with pytest.raises(argparse.ArgumentTypeError, match="expected a non-negative integer"):
        arguments.nonnegative_int("-1")


def test_int_list_and_option():
    assert arguments.int_list("64,64") == (64, 64) and arguments.int_list("8,") == (8,)
    for text, message in (("a,b", "comma-separated"), ("0,4", "positive"), ("", "positive")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            arguments.int_list(text)
    assert arguments.option("growth-rate=8") == ("growth_rate", 8)
    assert arguments.option("mask=half") == ("mask", "half")
    assert arguments.option("units=(8, 8)") == ("units", (8, 8))
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        arguments.option("growth")
