"""Boosting test fixtures: exact Gaussian components and mixture data with known answers."""
import numpy as np
import tensorflow_probability as tfp

from tfresflow.bijectors import AffineCoupling
from tfresflow.boosting import BoostedFlowTrainer
from tfresflow.models import FlowModel

tfb = tfp.bijectors

FAR = np.array([8.0, 8.0], np.float32)


def gaussian_component(mu, name):
    """A FlowModel that is exactly N(mu, I): a shift and an identity (zero-initialised) coupling."""
    flow = tfb.Chain([tfb.Shift(np.asarray(mu, np.float32), name=f"{name}_shift"),
                      AffineCoupling(2, hidden_units=(8,), name=f"{name}_coupling")])
    return FlowModel(flow, event_shape=[2], name=name)


def log_normal(z, mu, var=1.0):
    """log N(z; mu, var I) in two dimensions."""
    return -0.5 * np.sum((z - mu) ** 2, -1) / var - np.log(2 * np.pi * var)


def two_gaussian_trainer(objective="density", target=None, **kwargs):
    """A trainer over N(0, I) and N(FAR, I), both trained, weights 1/2 each."""
    comps = [gaussian_component([0.0, 0.0], "g0"), gaussian_component(FAR, "g1")]
    trainer = BoostedFlowTrainer(comps, objective=objective, target_log_prob=target, verbose=0,
                                 **kwargs)
    trainer.trained[:] = True
    trainer.weights[:] = [0.5, 0.5]
    return trainer


def mixture_data(frac_far, n=4000, seed=0):
    """``n`` points of (1 - f) N(0, I) + f N(FAR, I) and the realised fraction f."""
    rng = np.random.default_rng(seed)
    far = rng.uniform(size=n) < frac_far
    return (rng.normal(size=(n, 2)) + far[:, None] * FAR).astype(np.float32), far.mean()
