"""Test settings shared by every package's tests (pytest loads this for all of them)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Generator

# The in-memory store checks every list of changed pointers the executor gives it against a
# full comparison, so a change the executor forgets to list fails a test.
os.environ.setdefault("WFE_VERIFY_POINTER_CHANGES", "1")

#: Under CI a skip is a failure, so a missing tool, server or package can never hide a test
#: that proves a promise. The one exception: a conformance test that does not apply to the
#: provider under test, which says so by naming the capability it lacks.
IN_CI = os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}
NOT_APPLICABLE = re.compile(r"lacks the '[\w-]+' capability$")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        if not NOT_APPLICABLE.search(reason):
            report.outcome = "failed"
            report.longrepr = (
                f"skipped under CI ({reason}): in CI every test runs; give the session what "
                "this test needs (a tool, a server, a package) instead of skipping"
            )
    return report
