"""The one idiom for looking things up by name (here: the landmark backends; packages built on
``landmarks`` use it for their own registries).

A :class:`Registry` maps names to things in registration order. Things are added with
:meth:`Registry.register` (directly or as a decorator); ``modules`` are imported on the first
lookup, for registries whose entries register themselves when their module is imported (models).
An unknown name raises the registry's user-error type with one line listing the known names.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
_MISSING = object()


class Registry(Generic[T]):
    """Names → things of one ``kind`` (e.g. "landmark backend").

    Args:
        kind: what the things are, for error messages.
        error: the exception type raised for an unknown name (the package's user-error type).
        entries: initial name → thing pairs.
        modules: modules imported on the first lookup (their imports register entries).
    """

    def __init__(
        self,
        kind: str,
        error: type[Exception],
        entries: Mapping[str, T] | None = None,
        modules: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}
        self._modules = tuple(modules)
        self._imported = not self._modules
        for name, thing in (entries or {}).items():
            self.register(name, thing)

    def register(self, name: str, thing=_MISSING, *, replace: bool = False):
        """Add ``thing`` under ``name``; without ``thing``, a decorator that adds what it decorates.

        A second, different thing under a taken name is a programming error (ValueError) unless
        ``replace``.
        """
        if thing is _MISSING:
            def decorate(decorated: T) -> T:
                self.register(name, decorated, replace=replace)
                return decorated

            return decorate
        known = self._entries.get(name, _MISSING)
        if (known is not _MISSING and not replace and known is not thing
                and not _same_definition(known, thing)):
            raise ValueError(f"{self.kind} name {name!r} is already registered to {known!r}")
        self._entries[name] = thing
        return thing

    def registered(self, name: str) -> T | None:
        """The thing registered under ``name`` so far, or None (imports nothing: safe while the
        registering modules are being imported)."""
        return self._entries.get(name)

    def _load(self) -> None:
        if not self._imported:
            self._imported = True
            for module in self._modules:
                importlib.import_module(module)

    def __getitem__(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise self.error(f"unknown {self.kind} {name!r}; known: {known}") from None

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return list(self._entries.items())


def _same_definition(a: object, b: object) -> bool:
    """Re-importing a module (importlib.reload) registers an equal definition again."""
    return (
        getattr(a, "__module__", None) == getattr(b, "__module__", _MISSING)
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", _MISSING)
    )

