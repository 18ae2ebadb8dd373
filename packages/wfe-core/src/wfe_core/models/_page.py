"""A page of results from a listing or a search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import attrs

T = TypeVar("T")


@attrs.frozen
class Page(Generic[T]):
    """``items`` of one page and ``total``, the count of all matches across every page."""

    items: Sequence[T]
    total: int
    skip: int = 0
    take: int = 100
