"""Former home of the Lipschitz activations, now :mod:`tfresflow.lipschitz.activations`.

Kept for one release so ``import tfresflow.activations`` and its names keep working.
"""
from tfresflow.lipschitz.activations import *  # noqa: F401,F403
from tfresflow.lipschitz.activations import (ACTIVATIONS, LIPSWISH_DIVISOR,  # noqa: F401
                                             clipswish_lipschitz_constant, get, serialize)
