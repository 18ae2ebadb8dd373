"""``wfe validate FILE...``: load workflow files and report every problem at once."""

from __future__ import annotations

from pathlib import Path

import click

from wfe_core.errors import WfeError
from wfe_host.cli.run import load_file, parse_pairs
from wfe_host.cli.state import cli_state


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--set",
    "-s",
    "values",
    multiple=True,
    metavar="KEY=VALUE",
    help="A load-time value for ${{ config.KEY }} / ((KEY)) (repeatable).",
)
@click.pass_context
def validate_command(
    ctx: click.Context, /, files: tuple[Path, ...], values: tuple[str, ...]
) -> None:
    """Check workflow FILES without running them; print every problem (file:line:column).

    Exits 1 when any file has a problem.
    """
    state = cli_state(ctx)
    given = parse_pairs(values, "--set")
    total = 0
    for file in files:
        try:
            definitions = load_file(state, file, given)
        except WfeError as exc:
            problems = getattr(exc, "problems", None)
            lines = [str(p) for p in problems] if problems else [f"{file}: {exc}"]
            total += len(lines)
            for line in lines:
                click.echo(line)
            continue
        except click.ClickException as exc:
            total += 1
            click.echo(f"{file}: {exc.format_message()}")
            continue
        names = ", ".join(f"{d.id} v{d.version}" for d in definitions)
        click.echo(f"{file}: ok ({names})")
    if total:
        click.echo(f"{total} problem{'s' if total != 1 else ''} found", err=True)
        ctx.exit(1)
