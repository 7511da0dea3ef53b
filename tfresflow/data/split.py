"""Train/test data for a fit: a toy density drawn twice, or an ``.npy`` array split 80/20.

* :func:`train_test_data` is what ``tfresflow train`` and ``tfresflow evaluate`` call with
  their ``--data`` value: a toy density name draws ``n_train`` training points with ``seed``
  and ``n_test`` test points with ``seed + 1``; a path ending in ``.npy`` is loaded with
  :func:`load_array` and split with :func:`random_split` (the ``n_*`` arguments are unused).
* The same ``seed`` always gives the same split, so ``evaluate --seed S`` sees the test set of
  the ``train --seed S`` run.
"""
import numpy as np

from tfresflow.data.toy import sample
from tfresflow.io import check_input_file
from tfresflow.validation import check_number, check_samples

#: Fraction of an array's examples (rounded down, at least one) held out as the test set.
TEST_FRACTION = 0.2


def load_array(path, name="data"):
    """Loads a ``.npy`` file of shape ``[n, d]`` as a finite float32 array.

    Raises:
      ValueError: naming ``name`` when the file does not exist, is not a ``.npy`` file (or a
        truncated one), holds Python objects, is not two-dimensional, is empty or holds
        non-finite values.
    """
    check_input_file(path, name, "npy")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err):   # NumPy's wording for an array of Python objects
            raise ValueError(f"`{name}` file {path!r} holds Python objects (dtype object), "
                             "not numbers; save a numeric array.") from None
        raise ValueError(f"`{name}` file {path!r} is a damaged or truncated .npy file "
                         f"({err}).") from None
    except (EOFError, OSError) as err:
        raise ValueError(f"`{name}` file {path!r} is a damaged or truncated .npy file "
                         f"({err}).") from None
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise ValueError(f"`{name}` file {path!r} must hold numbers, got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must hold an array of shape [n, d] (examples x features), "
                         f"got shape {list(arr.shape)} in {path!r}.")
    return check_samples(arr, arr.shape[1:], name=name)


def random_split(x, seed=0, test_fraction=TEST_FRACTION, name="data"):
    """``(train, test)``: a seeded random permutation of ``x``'s examples, split in two.

    The test part holds ``max(1, floor(n * test_fraction))`` examples and the train part the
    rest; the two are disjoint and together hold every example once.

    Raises:
      ValueError: naming ``name`` when ``x`` has fewer than 2 examples (a train and a test
        example are both needed) or ``test_fraction`` is not in (0, 1).
    """
    test_fraction = check_number(test_fraction, "test_fraction", 0.0, 1.0, low_open=True,
                                 high_open=True)
    x = np.asarray(x)
    if x.ndim < 1 or len(x) < 2:
        raise ValueError(f"`{name}` needs at least 2 examples (train and test), got "
                         f"{0 if x.ndim < 1 else len(x)}.")
    x = x[np.random.default_rng(seed).permutation(len(x))]
    n_test = max(1, int(len(x) * test_fraction))
    return x[n_test:], x[:n_test]


def train_test_data(spec, n_train, n_test, seed=0, name="data", event_shape=None):
    """``(train, test)`` float32 arrays from a toy density name or a ``.npy`` file path.

    ``event_shape``: when given (the shape of one example of the model that will use the
    data, e.g. ``[2]``), both arrays are checked to have shape ``[n, *event_shape]``.

    Raises:
      ValueError: naming ``name`` for an unknown toy density, a missing or malformed file, too
        few examples to split, or examples not of ``event_shape``.
    """
    def checked(x):
        return x if event_shape is None else _of_event_shape(x, event_shape, name)

    if spec.endswith(".npy"):
        return random_split(checked(load_array(spec, name)), seed, name=name)
    return (checked(sample(spec, n_train, seed=seed)),
            checked(sample(spec, n_test, seed=seed + 1)))


def _of_event_shape(x, event_shape, name):
    """``x`` checked against a model's event shape, the error saying whose shape it is."""
    try:
        return check_samples(x, event_shape, name=name)
    except ValueError as err:
        raise ValueError(f"{err} The model was trained on examples of shape "
                         f"{list(event_shape)}.") from None
