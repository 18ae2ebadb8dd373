"""The pluggy markers of the ``wfe`` project (plugins import ``wfe_core.hookimpl``)."""

from __future__ import annotations

import pluggy

#: The pluggy project name, and the entry-point group plugins register under.
PROJECT_NAME = "wfe"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
