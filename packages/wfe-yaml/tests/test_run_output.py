"""What ``wfe run`` prints from a workflow cannot drive the terminal: escape sequences in step
output, step names and error messages are shown neutralised; the stored result keeps them."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from wfe_host.cli import main
from wfe_host.cli.terminal import printable

if TYPE_CHECKING:
    from pathlib import Path

PIPELINE = r"""
workflow:
  id: esc
  steps:
    - name: "Evil\e]0;title\a"
      config:
        run: |
          printf 'title \033]0;pwned\007 clip \033]52;c;ZWNobyBoaQ==\007\n'
          printf 'csi \033[2J\033[1A c1 \302\233 bs ab\b\bXY cr abc\rZZ tab\tend\n'
          printf 'fail \033]0;err\007\n' >&2
          exit 1
"""

#: Raw control characters a terminal acts on (tab is kept).
RAW = ["\x1b", "\x07", "\x9b", "\b", "\r", "\x00"]


def test_step_output_names_and_errors_are_neutralised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wfe_sqlite")  # the stored run is read back below
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WFE_"):
            monkeypatch.delenv(name)
    (tmp_path / "esc.yaml").write_text(PIPELINE)
    result = CliRunner().invoke(main, ["run", "esc.yaml", "--timeout", "60"])
    out = result.output
    assert result.exit_code == 1, out
    assert [char for char in RAW if char in out] == []
    # Shown, visibly: the user sees that something was there.
    assert "title \\x1b]0;pwned\\x07 clip \\x1b]52;c;ZWNobyBoaQ==\\x07" in out
    assert "csi \\x1b[2J\\x1b[1A c1 \\x9b bs ab\\b\\bXY cr abc\\rZZ tab\tend" in out
    assert "Evil\\x1b]0;title\\x07 │ fail \\x1b]0;err\\x07" in out  # step name and stderr
    assert "failed after" in out
    assert out.count("exited with code 1: fail \\x1b]0;err\\x07") == 2  # step and workflow
    # Only the terminal output changes: the stored result has the bytes the step wrote.
    listing = CliRunner().invoke(main, ["workflows", "list", "--json"])
    [item] = json.loads(listing.output)["items"]
    shown = CliRunner().invoke(main, ["workflows", "show", item["id"], "--json"])
    [stored] = [
        p["extensions"]["result"]
        for p in json.loads(shown.output)["pointers"]
        if "result" in p["extensions"]
    ]
    assert stored["stdout"].startswith("title \x1b]0;pwned\x07 clip \x1b]52;")
    assert stored["stderr"] == "fail \x1b]0;err\x07"
    # `wfe workflows show` prints the stored step names and errors neutralised too.
    text = CliRunner().invoke(main, ["workflows", "show", item["id"]]).output
    assert [char for char in RAW if char in text] == []
    assert "Evil\\x1b]0;title\\x07" in text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, tabs\tand ünïcödé", "plain text, tabs\tand ünïcödé"),
        (
            "\x1b]8;;https://evil/\x1b\\link\x1b]8;;\x1b\\",
            "\\x1b]8;;https://evil/\\x1b\\link\\x1b]8;;\\x1b\\",
        ),
        ("\x00\x7f\x85\x9b\x9d", "\\x00\\x7f\\x85\\x9b\\x9d"),
        ("safe\u202eevil", "safe\\u202eevil"),
        ("a\nb", "a\\nb"),
    ],
)
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_each_output_line_is_printed_once_by_a_real_process(tmp_path: Path) -> None:
    # A real process: in one, `wfe` installs its own log handler (under pytest it does not),
    # which must not print the step output the progress display already shows.
    import subprocess
    import sys

    (tmp_path / "once.yaml").write_text(
        "workflow:\n  id: once\n  steps:\n    - name: say\n      config:\n"
        "        run: echo only-once-please\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    done = subprocess.run(
        [sys.executable, "-m", "wfe_host", "--persistence", "memory", "run", "once.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).count("only-once-please") == 1, done.stdout + done.stderr
