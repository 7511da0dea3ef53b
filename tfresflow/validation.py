"""Input checks that turn bad data and arguments into clear errors instead of silent NaNs."""
import numbers

import numpy as np


def check_positive_int(value, name, minimum=1):
    """``int(value)`` for an integral number ``>= minimum``, else a ValueError naming ``name``.

    Integral floats (``3.0``, as configs written by other tools may hold) are accepted; bools,
    non-integral numbers and non-numbers are not.
    """
    integral = (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
        isinstance(value, numbers.Real) and not isinstance(value, bool)
        and float(value).is_integer())
    if not integral or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


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
