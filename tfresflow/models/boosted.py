"""Model builder ``"boosted"``: the C RealNVP coupling-flow components of a boosted flow.

Unlike the other builders it returns a *list* of C ``FlowModel``s, the components that
:class:`tfresflow.boosting.BoostedFlowTrainer` trains stage by stage into the mixture
``G = sum_c rho_c g_c`` (Giaquinto & Banerjee 2020, eq. 7).

References:
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896.
  Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803.
"""
import tensorflow_probability as tfp

from tfresflow import random as trf_random
from tfresflow.bijectors.coupling import AffineCoupling
from tfresflow.models.builders import register_model
from tfresflow.models.flow_model import FlowModel
from tfresflow.validation import check_positive_int, renamed_argument

tfb = tfp.bijectors

__all__ = ["boosted_coupling_components", "boosted_flow"]


def boosted_coupling_components(num_components, event_size, n_steps=None, hidden_units=(64, 64),
                                seed=0, name="boosted", flow_steps=None):
    """``num_components`` RealNVP coupling flows of ``n_steps`` steps each (a list).

    Component ``c`` starts its alternating masks at offset ``c`` (the reference's
    ``flip_init``), so one-step components transform different coordinates. Component ``c``'s
    seed generator is seeded from the stream ``"component_{c}"`` of ``seed``.

    Args:
      num_components: C, the number of components.
      event_size: size of one data vector.
      n_steps: coupling steps per component (default 1).
      hidden_units: conditioner hidden layer sizes.
      seed: integer seed.
      name: name prefix of the components and their steps.
      flow_steps: deprecated name of ``n_steps``.

    Returns:
      A list of C :class:`FlowModel`s (not one model).
    """
    n_steps = renamed_argument("n_steps", n_steps, "flow_steps", flow_steps, default=1)
    num_components = check_positive_int(num_components, "num_components")
    n_steps = check_positive_int(n_steps, "n_steps")
    models = []
    for c in range(num_components):
        steps = [AffineCoupling(event_size, hidden_units=hidden_units, reverse=bool((i + c) % 2),
                                name=f"{name}_c{c}_coupling_{i}")
                 for i in range(n_steps)]
        component_seed = int(trf_random.fold_in_tag(seed, f"component_{c}")[1]) & 0x7fffffff
        models.append(FlowModel(tfb.Chain(steps, name=f"{name}_c{c}_flow"),
                                event_shape=[event_size], seed=component_seed,
                                name=f"{name}_component_{c}"))
    return models


@register_model("boosted")
def boosted_flow(event_size, num_components=4, **options):
    """A list of ``num_components`` coupling-flow components (``build_model("boosted", ...)``).

    :func:`boosted_coupling_components` in the builders' ``(event_size, **options)`` calling
    convention: ``build_model("boosted", 2, num_components=4, n_steps=2)``.
    """
    return boosted_coupling_components(num_components, event_size, **options)
