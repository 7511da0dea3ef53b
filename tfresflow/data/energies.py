"""Unnormalised 2-D target densities ``p~(z) = exp(-U(z))`` of Rezende & Mohamed (2015).

The four energy functions of "Variational Inference with Normalizing Flows" (Table 1), used as
density-matching targets by gradient boosted flows (Giaquinto & Banerjee 2020, Fig. 5).
With ``z = (z1, z2)``:

    w1(z) = sin(2 pi z1 / 4)
    w2(z) = 3 exp(-1/2 ((z1 - 1) / 0.6)^2)
    w3(z) = 3 sigmoid((z1 - 1) / 0.3)
    U1(z) = 1/2 ((||z|| - 2) / 0.4)^2 - log(exp(-1/2 ((z1 - 2)/0.6)^2) + exp(-1/2 ((z1 + 2)/0.6)^2))
    U2(z) = 1/2 ((z2 - w1) / 0.4)^2
    U3(z) = -log(exp(-1/2 ((z2 - w1)/0.35)^2) + exp(-1/2 ((z2 - w1 + w2)/0.35)^2))
    U4(z) = -log(exp(-1/2 ((z2 - w1)/0.4)^2) + exp(-1/2 ((z2 - w1 + w3)/0.35)^2))

The log-sum-exps are evaluated stably (no ``+1e-10`` inside the log as in the reference code).
U2-U4 do not depend on ``z1`` except through the periodic/bounded ``w``'s, so
``exp(-U)`` is **not integrable** over the plane (the papers show them on ``[-4, 4]^2``).
Reverse-KL matching then rewards spreading mass along ``z1`` without bound; pass
``box=a`` to add the soft box ``(z1 / a)^8`` to U (negligible for ``|z1| < a/2``, 1 at
``|z1| = a``, ~26 at ``1.5 a``), which makes every target a proper density.

References:
  Rezende & Mohamed (2015), "Variational Inference with Normalizing Flows", ICML, arXiv:1505.05770
    (Table 1).
  Giaquinto & Banerjee (2020), "Gradient Boosted Normalizing Flows", NeurIPS, arXiv:2002.11896
    (Fig. 5).
"""
import numpy as np
import tensorflow as tf

from tfresflow.validation import check_number


def _w1(z1):
    return tf.sin(2.0 * np.pi * z1 / 4.0)


def _w2(z1):
    return 3.0 * tf.exp(-0.5 * tf.square((z1 - 1.0) / 0.6))


def _w3(z1):
    return 3.0 * tf.sigmoid((z1 - 1.0) / 0.3)


def _log_two_bumps(a, b):
    """``log(exp(-a^2/2) + exp(-b^2/2))`` evaluated stably."""
    return tf.reduce_logsumexp(tf.stack([-0.5 * tf.square(a), -0.5 * tf.square(b)], -1), -1)


def _u1(z1, z2):
    r = tf.sqrt(tf.square(z1) + tf.square(z2))
    return 0.5 * tf.square((r - 2.0) / 0.4) - _log_two_bumps((z1 - 2.0) / 0.6, (z1 + 2.0) / 0.6)


def _u2(z1, z2):
    return 0.5 * tf.square((z2 - _w1(z1)) / 0.4)


def _u3(z1, z2):
    d = z2 - _w1(z1)
    return -_log_two_bumps(d / 0.35, (d + _w2(z1)) / 0.35)


def _u4(z1, z2):
    d = z2 - _w1(z1)
    return -_log_two_bumps(d / 0.4, (d + _w3(z1)) / 0.35)


ENERGIES = {"U1": _u1, "U2": _u2, "U3": _u3, "U4": _u4}


def energy_names():
    """Names accepted by :func:`energy` and :func:`log_density`."""
    return sorted(ENERGIES)


def _lookup(name):
    key = str(name).upper()
    if key not in ENERGIES:
        raise ValueError(f"Unknown energy {name!r}; choose one of {energy_names()}.")
    return ENERGIES[key]


def energy(name, z, box=None):
    """The energy ``U(z)`` (float32, shape ``[...]``) of target ``name`` at ``z`` ``[..., 2]``.

    Args:
      name: ``"U1"`` ... ``"U4"`` (case-insensitive).
      z: points, shape ``[..., 2]``.
      box: optional half-width ``a > 0`` of the soft box ``(z1 / a)^8`` added to U.

    Raises:
      ValueError: for an unknown name, a last dimension other than 2 or a bad ``box``.
    """
    fn = _lookup(name)
    z = tf.convert_to_tensor(z, tf.float32)
    if z.shape.rank is not None and (z.shape.rank < 1 or z.shape[-1] not in (None, 2)):
        raise ValueError(f"`z` must have shape [..., 2], got {z.shape.as_list()}.")
    if box is not None:
        check_number(box, "box", 0.0, low_open=True)  # the soft box's half-width
    z1, z2 = z[..., 0], z[..., 1]
    u = fn(z1, z2)
    if box is not None:
        u = u + (z1 / float(box)) ** 8
    return u


def log_density(name, box=None):
    """The unnormalised log-density ``z -> -U(z)`` of target ``name`` as a callable.

    See :func:`energy` for the arguments; the name is checked immediately.
    """
    _lookup(name)
    if box is not None:
        check_number(box, "box", 0.0, low_open=True)  # the soft box's half-width

    def target_log_prob(z):
        return -energy(name, z, box=box)

    target_log_prob.__name__ = f"log_density_{str(name).upper()}"
    return target_log_prob


def log_normalizer(name, box=None, limits=((-8.0, 8.0), (-8.0, 8.0)), resolution=801):
    """``log Z = log ∫ exp(-U(z)) dz`` by the trapezoid rule on a grid over ``limits``.

    Accurate when ``exp(-U)`` is negligible outside ``limits``: true for U1, and for U2-U4
    only with a ``box`` well inside ``limits`` (without a box they are not integrable and the
    value just grows with the grid). Used to turn reverse-KL estimates ``E_q[log q + U]``
    into ``KL(q || p)``.
    """
    (x0, x1), (y0, y1) = limits
    xs = np.linspace(x0, x1, int(resolution))
    ys = np.linspace(y0, y1, int(resolution))
    zz = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    log_p = -energy(name, zz, box=box).numpy().astype(np.float64).reshape(len(xs), len(ys))
    m = log_p.max()
    return float(m + np.log(np.trapezoid(np.trapezoid(np.exp(log_p - m), ys, axis=1), xs)))
