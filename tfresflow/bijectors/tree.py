"""Walks over trees of bijectors: ``tfb.Chain`` and ``tfb.Invert`` nodes, other bijectors leaves.

A flow is a tree whose inner nodes are ``tfb.Chain`` (applies its list *last first* in the
``forward``, sampling direction, so the list is in data -> latent order) and ``tfb.Invert``
(swaps the directions of its child). Everything that needs to look inside a flow (listing
the steps, routing per-step keyword arguments, rebuilding with renamed steps, serialising,
the value-only density map) walks it through :func:`fold`, the one recursion over the tree.
"""
import tensorflow_probability as tfp

from tfresflow._compat import ChainType, InvertType

tfb = tfp.bijectors

__all__ = ["fold", "leaves", "forward_order", "map_leaves", "chain_kwargs",
           "data_to_latent_value", "with_unique_names", "is_chain", "is_invert"]


def is_chain(bijector):
    """True for a ``tfb.Chain`` (of any parts)."""
    return isinstance(bijector, ChainType)


def is_invert(bijector):
    """True for a ``tfb.Invert`` (of any part)."""
    return isinstance(bijector, InvertType)


def fold(bijector, leaf, chain, invert):
    """Bottom-up fold of a bijector tree.

    ``leaf(b)`` is called on every non-composite bijector, ``chain(node, parts)`` on every
    ``tfb.Chain`` with the folded values of its ``bijectors`` (list order) and
    ``invert(node, part)`` on every ``tfb.Invert`` with the folded value of its child.
    """
    if is_chain(bijector):
        return chain(bijector, [fold(b, leaf, chain, invert) for b in bijector.bijectors])
    if is_invert(bijector):
        return invert(bijector, fold(bijector.bijector, leaf, chain, invert))
    return leaf(bijector)


def leaves(bijector):
    """The non-composite bijectors of a tree, in data -> latent (TFP ``inverse``) order."""
    return fold(bijector, lambda b: [b], lambda node, parts: [b for p in parts for b in p],
                lambda node, part: list(reversed(part)))


def forward_order(bijector):
    """The leaves in the order ``forward`` (sampling) applies them; no ``tfb.Invert`` allowed."""
    def invert(node, part):
        raise ValueError("Component selection does not support tfb.Invert steps.")
    return fold(bijector, lambda b: [b],
                lambda node, parts: [b for p in reversed(parts) for b in p], invert)


def map_leaves(bijector, fn):
    """The same tree with every leaf ``b`` replaced by ``fn(b)`` (inner nodes rebuilt)."""
    return fold(bijector, fn, lambda node, parts: tfb.Chain(parts, name=node.name),
                lambda node, part: tfb.Invert(part, name=node.name))


def chain_kwargs(bijector, leaf_kwargs):
    """Nested keyword arguments for ``bijector``'s methods, ``leaf_kwargs(b)`` for each leaf.

    ``tfb.Chain`` routes ``bijector_kwargs={step name: kwargs}`` to its parts by name (and
    ``tfb.Invert`` passes its kwargs to its child), so the result is that nested dict.
    """
    return fold(bijector, leaf_kwargs,
                lambda node, parts: {b.name: p for b, p in zip(node.bijectors, parts)},
                lambda node, part: part)


def data_to_latent_value(bijector, x):
    """The data -> latent map of a tree without log-dets or caching (brute-force Jacobians).

    Leaves with a ``data_to_latent_value`` method (tfresflow bijectors) use it, other leaves
    their ``inverse``; a ``tfb.Invert`` node is applied as a whole (its ``inverse``).
    """
    def leaf(b):
        return getattr(b, "data_to_latent_value", b.inverse)

    def chain(node, parts):
        def apply(v):
            for part in parts:
                v = part(v)
            return v
        return apply

    return fold(bijector, leaf, chain, lambda node, part: node.inverse)(x)


def with_unique_names(bijector, needs_unique, rename):
    """The tree with every leaf for which ``needs_unique(b)`` holds given a name of its own.

    ``tfb.Chain`` routes per-step keyword arguments by name, so a step that takes them (a seed,
    ``training``) must not share its name with any other step of the tree. Such a leaf whose
    name is already used (by an earlier leaf, or by any step that takes no arguments) is
    replaced by ``rename(b, new_name)`` with ``new_name = f"{name}_{k}"``, the smallest free
    ``k``; steps that take no arguments (TFP's ``tfb.Permute`` steps, all named "permute") may
    share names. Returns ``bijector`` itself when no name had to change.
    """
    all_leaves = leaves(bijector)
    reserved = {b.name for b in all_leaves if not needs_unique(b)}
    used = set()
    renamed = []

    def fresh(b):
        name = b.name
        if name in used or name in reserved:
            k = 1
            while f"{name}_{k}" in used or f"{name}_{k}" in reserved:
                k += 1
            b = rename(b, f"{name}_{k}")
            renamed.append(name)
        used.add(b.name)
        return b

    result = map_leaves(bijector, lambda b: fresh(b) if needs_unique(b) else b)
    return result if renamed else bijector
