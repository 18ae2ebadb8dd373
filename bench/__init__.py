"""Benchmark harness of WFE for Python (not part of the test suite; ``nox -s bench``).

``python -m bench --help`` for the options; docs/benchmarks.md for what is measured and how.
"""

from __future__ import annotations
