"""``wfe validate PATH...``: load workflow files and report every problem at once.

A PATH is a file, a directory (searched recursively, hidden ones skipped, for files with an
installed definition format's suffix: ``.yaml`` / ``.yml`` with wfe-yaml) or a glob pattern
(``pipelines/**/*.yaml``, for shells that do not expand it). Problems are printed as
``file:line:column: message`` lines, as a JSON list (``--json``), or as GitHub Actions
``::error`` annotations (``--format github``), which GitHub shows on the lines they name.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from wfe_core.errors import WfeError
from wfe_host.cli.run import load_file, parse_pairs
from wfe_host.cli.state import cli_state
from wfe_host.cli.worker import definition_files

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from wfe_host.cli.state import CliState

__all__ = ["Finding", "github_annotation", "validate_command"]

_GLOB_CHARACTERS = frozenset("*?[")


@attrs.frozen
class Finding:
    """One problem of one file; ``line`` and ``column`` (1-based) when the loader knows
    them."""

    file: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.column or 1}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        """``{"file", "line", "column", "message"}``."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }


def _escape_data(text: str) -> str:
    # GitHub's workflow-command encoding: a message may not hold %, CR or LF as they are.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(finding: Finding) -> str:
    """``::error file=F,line=L,col=C::message`` (a GitHub Actions workflow command)."""
    properties = [f"file={_escape_property(finding.file)}"]
    if finding.line is not None:
        properties.append(f"line={finding.line}")
        if finding.column:
            properties.append(f"col={finding.column}")
    return f"::error {','.join(properties)}::{_escape_data(finding.message)}"


def _from_problem(problem: object, file: Path) -> Finding:
    """A loader's problem: one with a ``mark`` (``file``, ``line``, ``column``) and a
    ``message`` (wfe-yaml's), else its text for the file as a whole."""
    mark = getattr(problem, "mark", None)
    message = getattr(problem, "message", None)
    line = getattr(mark, "line", None)
    if mark is None or not isinstance(message, str) or not isinstance(line, int):
        return Finding(str(file), str(problem))
    column = getattr(mark, "column", None)
    return Finding(
        str(getattr(mark, "file", file)),
        message,
        line if line > 0 else None,
        column if line > 0 and isinstance(column, int) and column > 0 else None,
    )


def expand(state: CliState, paths: Iterable[str]) -> tuple[list[Path], list[Finding]]:
    """The files ``paths`` name (files, directories, glob patterns), and a finding for each
    path that names none."""
    files: list[Path] = []
    findings: list[Finding] = []
    registry = state.get_registry()
    for text in paths:
        path = Path(text)
        if not path.exists() and _GLOB_CHARACTERS & set(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            if not matches:
                findings.append(Finding(text, "no files match this pattern"))
                continue
        else:
            matches = [path]
        try:
            files += definition_files(matches, registry)
        except WfeError as exc:  # a directory without definition files
            findings.append(Finding(text, str(exc)))
    return list(dict.fromkeys(files)), findings


def check_file(
    state: CliState, file: Path, values: Mapping[str, str]
) -> tuple[list[Finding], str | None]:
    """The problems of ``file``, and what it defines when it has none (``"hello v1"``)."""
    try:
        definitions = load_file(state, file, values)
    except WfeError as exc:
        problems = getattr(exc, "problems", None)
        if problems:
            return [_from_problem(p, file) for p in problems], None
        return [Finding(str(file), str(exc))], None
    except click.ClickException as exc:
        return [Finding(str(file), exc.format_message())], None
    return [], ", ".join(f"{d.id} v{d.version}" for d in definitions)


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--set",
    "-s",
    "values",
    multiple=True,
    metavar="KEY=VALUE",
    help="A load-time value for ${{ config.KEY }} / ((KEY)) (repeatable).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="text: file:line:column: message lines; json: a list of {file, line, column, "
    "message}; github: ::error annotations for GitHub Actions.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
def validate_command(
    ctx: click.Context,
    /,
    paths: tuple[str, ...],
    values: tuple[str, ...],
    output_format: str,
    as_json: bool,
) -> None:
    """Check workflow files without running them; print every problem.

    PATH is a file, a directory (searched recursively for definition files: .yaml and .yml
    with wfe-yaml) or a glob pattern ('flows/**/*.yaml'). Exits 1 when there is any problem.
    """
    state = cli_state(ctx)
    given = parse_pairs(values, "--set")
    if as_json:
        output_format = "json"
    files, findings = expand(state, paths)
    for finding in findings:
        _report(finding, output_format)
    for file in files:
        problems, defined = check_file(state, file, given)
        findings += problems
        for problem in problems:
            _report(problem, output_format)
        if defined is not None and output_format != "json":
            click.echo(f"{file}: ok ({defined})")
    if output_format == "json":
        click.echo(json.dumps([f.as_json() for f in findings], indent=2, ensure_ascii=False))
    if findings:
        count = len(findings)
        click.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        ctx.exit(1)


def _report(finding: Finding, output_format: str) -> None:
    if output_format == "text":
        click.echo(str(finding))
    elif output_format == "github":
        click.echo(github_annotation(finding))
