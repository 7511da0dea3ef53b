"""Input checks that turn bad data and arguments into clear errors instead of silent NaNs.

Every argument check of the package lives here, so one kind of argument is checked (and its
error worded) one way everywhere: each function returns the converted value or raises a
ValueError that names the argument, what was expected and what was given.
"""
import math
import numbers
import warnings

import numpy as np


def check_positive_int(value, name, minimum=1, integral_floats=True):
    """``int(value)`` for an integral number ``>= minimum``, else a ValueError naming ``name``.

    Integral floats (``3.0``, as configs written by other tools may hold) are accepted unless
    ``integral_floats=False``; bools, non-integral numbers and non-numbers never are.
    """
    integral = (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
        integral_floats and isinstance(value, numbers.Real) and not isinstance(value, bool)
        and math.isfinite(value) and float(value).is_integer())
    if not integral or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {what}, got {value!r}.")
    return int(value)


def check_number(value, name, low=None, high=None, low_open=False, high_open=False):
    """``float(value)`` for a finite real number in the given interval, else a ValueError.

    ``low``/``high`` bound the interval (``None``: unbounded); ``low_open``/``high_open``
    exclude the bound itself. Bools and non-numbers are rejected.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    ok = not isinstance(value, bool) and math.isfinite(number)
    if ok and low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        raise ValueError(f"`{name}` must be {_interval(low, high, low_open, high_open)}, "
                         f"got {value!r}.")
    return number


def _interval(low, high, low_open, high_open):
    if low is None and high is None:
        return "a finite number"
    if high is None:
        return f"a finite number {'>' if low_open else '>='} {low}"
    if low is None:
        return f"a finite number {'<' if high_open else '<='} {high}"
    return f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_coeff(coeff, name="coeff"):
    """A Lipschitz coefficient: ``float(coeff)`` strictly between 0 and 1, else a ValueError."""
    try:
        return check_number(coeff, name, 0.0, 1.0, low_open=True, high_open=True)
    except ValueError:
        raise ValueError(
            f"`{name}` (the Lipschitz coefficient) must be a number strictly between 0 and 1 "
            f"so that the residual map is a contraction, got {coeff!r}.") from None


def check_choice(value, name, choices):
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
    return value


def check_event_shape(shape, name="event_shape"):
    """A non-empty list of positive integer sizes (``[2]``, ``[28, 28, 1]``), else ValueError."""
    try:
        dims = list(shape) if not isinstance(shape, numbers.Number) else [shape]
        dims = [check_positive_int(d, name) for d in dims]
    except (TypeError, ValueError):
        dims = []
    if not dims:
        raise ValueError(f"`{name}` must be a non-empty list of positive sizes, got {shape!r}.")
    return dims


def renamed_argument(new_name, new_value, old_name, old_value, default):
    """The value of an argument renamed ``old_name`` -> ``new_name`` (old name kept one release).

    Functions declare both parameters with default ``None``; passing the old name warns with a
    DeprecationWarning and is used as the new one, passing both is a TypeError, passing neither
    gives ``default``.
    """
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None:
        raise TypeError(f"Pass `{new_name}` only: `{old_name}` is its deprecated old name.")
    warnings.warn(f"`{old_name}` is deprecated and will be removed in the next release; use "
                  f"`{new_name}`.", DeprecationWarning, stacklevel=3)
    return old_value


def check_samples(x, event_shape, name="x"):
    """Validates a batch of samples and returns it as a float32 numpy array.

    Checks: numeric, non-empty, shape ``[n, *event_shape]``, all values finite.

    Raises:
      ValueError: naming ``name`` and what was wrong.
    """
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be numeric array-like data: {err}") from None
    event_shape = list(event_shape)
    if arr.ndim != 1 + len(event_shape) or list(arr.shape[1:]) != event_shape:
        raise ValueError(f"`{name}` must have shape [n, {', '.join(map(str, event_shape))}] "
                         f"(event shape {event_shape}), got {list(arr.shape)}.")
    if arr.shape[0] == 0:
        raise ValueError(f"`{name}` is empty: at least one example is needed.")
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad.reshape(arr.shape[0], -1))[0])
        raise ValueError(f"`{name}` contains non-finite values (NaN or inf) in {len(rows)} "
                         f"example(s), first at index {int(rows[0])}.")
    return arr
