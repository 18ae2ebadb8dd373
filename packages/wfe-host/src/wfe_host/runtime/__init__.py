"""The parts of the :class:`~wfe_host.WorkflowHost` runtime, one concern per module."""

from __future__ import annotations
