"""Argument types of the ``tfresflow`` command line (``type=`` / ``action=`` for argparse).

Each type turns the text of one command-line value into a Python value or raises
``argparse.ArgumentTypeError`` (argparse then exits with code 2 and names the option). This
module imports neither TensorFlow nor Keras, so parsing (and ``tfresflow --help``) stays fast.
"""
import argparse
import ast
import sys

from tfresflow.io import check_output_file
from tfresflow.validation import check_positive_int


def _int_at_least(text, minimum, what):
    try:
        return check_positive_int(int(text), what, minimum=minimum)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text):
    """An integer >= 1, e.g. ``--steps 2000``."""
    return _int_at_least(text, 1, "a positive integer")


def nonnegative_int(text):
    """An integer >= 0, e.g. ``--finetune-passes 0``."""
    return _int_at_least(text, 0, "a non-negative integer")


def int_list(text):
    """A tuple of positive integers written with commas, e.g. ``--hidden 64,64``."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def output_file(text):
    """A file path that can be written: its folder exists and is writable, and it is not a
    directory (checked at parse time, before any work; see
    :func:`tfresflow.io.check_output_file`)."""
    try:
        return check_output_file(text, "--out")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def option(text):
    """``KEY=VALUE`` -> ``(key, value)``: the key with ``-`` turned into ``_``, the value a
    Python literal when it reads as one (``3``, ``0.5``, ``(8, 8)``, ``True``), else the string.
    """
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # keep as a string
    return key.strip().replace("-", "_"), value



class RenamedOption(argparse.Action):
    """Stores one value like ``action="store"``; the old spellings in ``old`` still work.

    Give the new spelling first and the old ones after it, e.g.
    ``add_argument("--n-steps", "--flow-steps", action=RenamedOption, old=["--flow-steps"])``:
    using an old spelling prints a one-line deprecation note to stderr.
    """

    def __init__(self, option_strings, dest, old=(), **kwargs):
        self.old = tuple(old)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.old:
            print(f"{parser.prog}: `{option_string}` is deprecated and will be removed in the "
                  f"next release; use `{self.option_strings[0]}`.", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_n_steps(parser, default, help_text):
    """Adds ``--n-steps`` (old spelling ``--flow-steps``, deprecated) to ``parser``."""
    parser.add_argument("--n-steps", "--flow-steps", dest="n_steps", type=positive_int,
                        default=default, metavar="N", action=RenamedOption,
                        old=["--flow-steps"],
                        help=f"{help_text} (`--flow-steps` is its deprecated old name)")


def positive_float(text):
    """A finite number > 0, e.g. ``--lr 1e-3``."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _float_in(text, low, high, what, include_low=True):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not ((low <= value if include_low else low < value) and value < high):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def nonnegative_float(text):
    """A finite number >= 0, e.g. ``--weight-decay 5e-4``."""
    return _float_in(text, 0.0, float("inf"), "a number >= 0")


def decay_rate(text):
    """A number in ``[0, 1)``, e.g. ``--ema-decay 0.999`` (0: no averaging)."""
    return _float_in(text, 0.0, 1.0, "a number in [0, 1)")


def class_count(text):
    """An integer >= 2, e.g. ``--classes 10``."""
    return _int_at_least(text, 2, "an integer >= 2")


def hybrid_lambda(text):
    """``--lam``: a finite number >= 0, or ``1/D`` (returned as the string ``"1/D"``; one over
    the number of pixel values of an image, resolved by the model)."""
    if text.replace(" ", "").upper() == "1/D":
        return "1/D"
    try:
        return nonnegative_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 1/D, got {text!r}") \
            from None
