"""Named model recipes (used by the CLI and examples): ``build_model("coupling", 2)``.

Each family registers a builder ``fn(event_size, **options) -> FlowModel`` (``event_shape``
for the image families) under a name with
:func:`register_model`; options a builder does not know raise a ``TypeError`` naming them.

References:
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803
    (the ``coupling`` recipe).
"""
import tensorflow_probability as tfp

from tfresflow.bijectors.coupling import AffineCoupling
from tfresflow.models.flow_model import FlowModel
from tfresflow.registry import Registry

tfb = tfp.bijectors

#: Model recipes ``fn(event_size, **options)`` by name.
MODEL_BUILDERS = Registry("model")


def register_model(name):
    """Decorator registering a model builder under ``name``."""
    return MODEL_BUILDERS.register(name)


def build_model(kind, event_size, **options):
    """Builds the registered model ``kind`` for vectors of size ``event_size`` (an int), or
    for events of shape ``event_size`` (a list or tuple, e.g. ``[28, 28, 1]`` for the image
    models ``resflow-image`` and ``idensenet-image``).

    Raises:
      ValueError: for an unknown ``kind``.
    """
    shape = list(event_size) if isinstance(event_size, (list, tuple)) else int(event_size)
    return MODEL_BUILDERS.lookup(kind, "kind")(shape, **options)


@register_model("coupling")
def coupling_flow(event_size, n_steps=8, hidden_units=(64, 64), mask="half", seed=0):
    """RealNVP: ``n_steps`` affine couplings with alternating masks."""
    steps = [AffineCoupling(event_size, hidden_units=hidden_units, mask=mask,
                            reverse=bool(i % 2), name=f"coupling_{i}")
             for i in range(n_steps)]
    return FlowModel(tfb.Chain(steps, name="coupling_flow"), event_shape=[event_size],
                     seed=seed, name="coupling_flow_model")
