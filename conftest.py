"""Test settings shared by every package's tests (pytest loads this for all of them)."""

from __future__ import annotations

import os

# The in-memory store checks every list of changed pointers the executor gives it against a
# full comparison, so a change the executor forgets to list fails a test.
os.environ.setdefault("WFE_VERIFY_POINTER_CHANGES", "1")
