"""i-DenseNet block ``x -> x + g(x)`` with a DenseNet residual function.

Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish":
the block is a Residual Flow block (:class:`tfresflow.bijectors.ResidualBlock`: the same log-det
estimators, gradients and fixed-point inverse) whose ``g`` is a
:class:`tfresflow.nets.DenseNet` (Lipschitz-normalised dense layers with learnable weighted
concatenation).

References:
  Perugachi-Diaz, Tomczak & Bhulai (2021), "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS, arXiv:2102.02694.
  Chen, Behrmann, Duvenaud & Jacobsen (2019), "Residual Flows for Invertible Generative Modeling",
    NeurIPS, arXiv:1906.02735.
"""
from tfresflow.bijectors.base import unique_name
from tfresflow.bijectors.residual import ResidualBlock
from tfresflow.nets.densenet import DenseNet


class DenseBlock(ResidualBlock):
    """Residual block whose ``net`` is an i-DenseNet (:class:`tfresflow.nets.DenseNet`).

    Args:
      net: a :class:`tfresflow.nets.DenseNet` (or its serialised config).
      logdet, event_ndims, inverse_atol, inverse_rtol, max_iterations, on_nonconvergence:
        as :class:`ResidualBlock`.
    """

    def __init__(self, net, logdet=None, event_ndims=1, inverse_atol=1e-6, inverse_rtol=1e-5,
                 max_iterations=1000, on_nonconvergence="raise", validate_args=False, name=None):
        super().__init__(net, logdet=logdet, event_ndims=event_ndims,
                         inverse_atol=inverse_atol, inverse_rtol=inverse_rtol,
                         max_iterations=max_iterations, on_nonconvergence=on_nonconvergence,
                         validate_args=validate_args, name=unique_name(name, "dense_block"))
        if not isinstance(self.net, DenseNet):
            raise TypeError(f"`net` of a DenseBlock must be a tfresflow.nets.DenseNet, got "
                            f"{type(self.net).__name__}; use ResidualBlock for other nets.")

    def normalized_eta(self):
        """``[depth, 2]`` normalised concatenation weights of the DenseNet (paper Fig. 10)."""
        return self.net.normalized_eta()
