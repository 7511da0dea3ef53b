"""``Registry``: one small named table for everything tfresflow looks up by name.

Log-det estimators, bijector classes (deserialisation), base distributions, Lipschitz
activations, relative-gradient activations and model recipes are each a ``Registry``. It is a
read-only ``Mapping`` (so ``name in registry``, ``sorted(registry)`` and ``registry[name]`` work),
``register`` adds an entry (also as a decorator), and ``get`` fails with a message that names
the kind of thing and lists what is registered.
"""
from collections.abc import Mapping


class Registry(Mapping):
    """A named table of classes or factories.

    Args:
      kind: what the entries are, for error messages (e.g. ``"model"``).
      case_sensitive: when False, names are looked up and stored lower-cased.
    """

    def __init__(self, kind, case_sensitive=True):
        self.kind = str(kind)
        self.case_sensitive = bool(case_sensitive)
        self._entries = {}

    def _key(self, name):
        if not isinstance(name, str):
            raise TypeError(f"A {self.kind} name must be a string, got {type(name).__name__}.")
        return name if self.case_sensitive else name.lower()

    def register(self, name_or_obj=None, obj=None):
        """Adds an entry; usable as ``register(obj)``, ``register("name", obj)`` or a decorator.

        ``@registry.register`` registers a class under its ``__name__``;
        ``@registry.register("name")`` under ``name``. Re-registering a name replaces it.
        """
        if obj is not None:
            self._entries[self._key(name_or_obj)] = obj
            return obj
        if name_or_obj is None or isinstance(name_or_obj, str):
            def decorate(entry):
                return self.register(name_or_obj or entry.__name__, entry)
            return decorate
        return self.register(name_or_obj.__name__, name_or_obj)

    def get(self, name, default=None):
        """The entry ``name``, or ``default`` when absent (the ``Mapping`` contract)."""
        return self._entries.get(self._key(name), default) if isinstance(name, str) else default

    def lookup(self, name, argument=None):
        """The entry ``name``; a ValueError naming ``argument`` and the choices when unknown."""
        if isinstance(name, str) and self._key(name) in self._entries:
            return self._entries[self._key(name)]
        what = f"`{argument}`" if argument else self.kind
        raise ValueError(f"Unknown {what} {name!r}; registered {self.kind}s: {sorted(self)}.")

    def __getitem__(self, name):
        if isinstance(name, str) and self._key(name) in self._entries:
            return self._entries[self._key(name)]
        raise KeyError(name)

    def __contains__(self, name):
        return isinstance(name, str) and self._key(name) in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def __repr__(self):
        return f"Registry({self.kind!r}, {sorted(self)})"
