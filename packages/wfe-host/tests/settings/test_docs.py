"""docs/settings.md names every setting and its environment variable."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from wfe_host.options import HostOptions
from wfe_host.settings import CONCERNS

DOC = Path(__file__).resolve().parents[4] / "docs" / "settings.md"


@pytest.mark.parametrize("field", [f.name for f in attrs.fields(HostOptions)])
def test_every_host_option_is_documented_with_its_variable(field: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"`host.{field}`" in text
    assert f"`WFE_HOST_{field.upper()}`" in text


@pytest.mark.parametrize("concern", CONCERNS)
def test_every_concern_variable_is_documented(concern: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    for suffix in ("", "_PROVIDER", "_URL", "_OPTIONS"):
        assert f"`WFE_{concern.upper()}{suffix}`" in text
