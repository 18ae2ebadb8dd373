"""``wfe migrate``: apply (or, with ``--check``, verify) the providers' database schemas."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from wfe_core.providers import SchemaOwner, SchemaStatus
from wfe_host.cli.defaults import cli_defaults, resolve_cli_settings
from wfe_host.cli.host_factory import run_async
from wfe_host.cli.state import cli_state
from wfe_host.settings import CONCERNS

if TYPE_CHECKING:
    from wfe_host.bootstrap import ResolvedSettings

__all__ = ["migrate_command"]

#: Exit status of ``--check`` when a schema needs migrations.
OUT_OF_DATE = 3


def _owners(resolved: ResolvedSettings) -> list[tuple[str, SchemaOwner]]:
    """The configured providers that own a schema, by concern."""
    found: list[tuple[str, SchemaOwner]] = []
    for concern in CONCERNS:
        provider = getattr(resolved, "search" if concern == "search" else concern)
        if isinstance(provider, SchemaOwner):
            found.append((concern, provider))
    return found


def _describe(status: SchemaStatus) -> str:
    if status.up_to_date:
        return f"{status.where}: up to date (schema version {status.current})"
    steps = "; ".join(status.pending)
    return (
        f"{status.where}: schema version {status.current}, needs {status.latest} "
        f"({len(status.pending)} migration{'s' if len(status.pending) != 1 else ''}: {steps})"
    )


@click.command("migrate")
@click.option(
    "--check",
    is_flag=True,
    help=f"Only check: change nothing, exit {OUT_OF_DATE} when a schema needs migrations.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of statuses.")
@click.pass_context
def migrate_command(ctx: click.Context, check: bool, as_json: bool) -> None:
    """Bring the schemas of the configured providers (persistence, lock, queue, search) up
    to date, or check them with --check.

    Providers migrate their schema when they open, so this is only needed where the
    application may not run DDL: run `wfe migrate` in a deployment step with a privileged
    role, and set the providers to check instead of migrate (see their docs). Migrating is
    safe while other processes use the store and when several run it at once.
    """
    state = cli_state(ctx)
    # --check must not even create the default store's directory.
    resolved = (
        state.resolve(defaults=cli_defaults(state.get_registry()))
        if check
        else resolve_cli_settings(state)
    )

    async def body() -> list[tuple[str, SchemaStatus, SchemaStatus | None]]:
        seen: set[str] = set()
        results = []
        for concern, owner in _owners(resolved):
            before = await owner.schema_status()
            if before.where in seen:  # lock and queue in the persistence's database
                continue
            seen.add(before.where)
            after = None if check or before.up_to_date else await owner.migrate_schema()
            results.append((concern, before, after))
        return results

    results = run_async(body)
    if as_json:
        rows = [
            {
                "concern": concern,
                "where": before.where,
                "version_before": before.current,
                "version": (after or before).current,
                "latest": before.latest,
                "pending": list((after or before).pending),
                "migrated": after is not None,
            }
            for concern, before, after in results
        ]
        click.echo(json.dumps(rows, indent=2))
    elif not results:
        click.echo("no configured provider has a schema (nothing to migrate)")
    for concern, before, after in results:
        if as_json:
            break
        if after is None:
            click.echo(f"{concern}: {_describe(before)}")
        else:
            click.echo(
                f"{concern}: {after.where}: migrated from schema version {before.current} "
                f"to {after.current}"
            )
    if check and any(not before.up_to_date for _, before, _ in results):
        if not as_json:
            click.echo("run 'wfe migrate' to apply the pending migrations", err=True)
        ctx.exit(OUT_OF_DATE)
