"""Internal: the ABC base that refuses to create a class with abstract methods left, naming
them (the error every contract of :mod:`wfe_core.providers` raises)."""

from __future__ import annotations

import abc
from typing import Any, Self

from wfe_core.errors import AbstractProviderError


def missing_methods(cls: type) -> list[str]:
    """``Contract.method`` for each abstract method ``cls`` leaves unimplemented, sorted."""
    missing = []
    for name in sorted(getattr(cls, "__abstractmethods__", ())):
        # Name the contract that declares it, so the message says what to implement.
        owner = next(
            (base for base in reversed(cls.__mro__) if name in vars(base)),
            cls,
        )
        missing.append(f"{owner.__name__}.{name}")
    return missing


class EnforcedABC(abc.ABC):  # noqa: B024 (the abstract methods are the subclasses')
    """An ABC whose subclasses cannot be created while they leave an abstract method
    unimplemented: creating one raises :class:`~wfe_core.errors.AbstractProviderError` (a
    ``TypeError``, as for any ABC) naming the class and every missing method."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        if getattr(cls, "__abstractmethods__", None):
            raise AbstractProviderError(
                f"{cls.__module__}.{cls.__qualname__} cannot be created: it does not implement "
                f"{', '.join(missing_methods(cls))}"
            )
        # object.__new__ refuses extra arguments; __init__ takes them.
        return super().__new__(cls)
