"""The systems measured: WFE itself and its peer, DBOS Transact."""

from __future__ import annotations
