"""examples/pizza.py runs, and everything its story promises happens."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PIZZA = Path(__file__).resolve().parents[4] / "examples" / "pizza.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("pizza_example", PIZZA)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_pizza_story_happens() -> None:
    pizza = _load()
    instance = await pizza.main(verbose=False)
    assert pizza.check(instance) == []
    log = instance.data.log
    # The saga undid its bookings in reverse order, and the loop and retry really ran.
    assert log.index("car broke down") < log.index("route cancelled")
    assert log.index("route cancelled") < log.index("driver released")
    assert [x for x in log if x.startswith("oven at")] == [
        "oven at 100",
        "oven at 180",
        "oven at 260",
    ]


def test_pizza_runs_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, str(PIZZA)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "workflow pizza-order: complete" in done.stdout
