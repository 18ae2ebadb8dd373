"""The ``jsonl`` lifecycle publisher, tested as a plugin author would: with wfe-core only."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anyio
import pluggy
import pytest
from wfe_example_plugin import plugin
from wfe_example_plugin.jsonl import JsonlLifecyclePublisher, path_from_url
from wfe_example_plugin.options import JsonlOptions

from wfe_core.errors import ConfigurationError, ProviderError
from wfe_core.models import LifecycleEvent, LifecycleEventType
from wfe_core.plugins import PROJECT_NAME, ProviderKind, ProviderSpec, hookspecs

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def event(kind: LifecycleEventType, workflow_id: str = "w1", **extra: object) -> LifecycleEvent:
    return LifecycleEvent(kind, workflow_id, "order-flow", 1, **extra)  # type: ignore[arg-type]


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_each_event_is_appended_as_one_json_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "events.jsonl"  # the directory is created on open
    async with JsonlLifecyclePublisher(path) as publisher:
        await publisher.publish(event(LifecycleEventType.WORKFLOW_STARTED))
        await publisher.publish(
            event(LifecycleEventType.STEP_COMPLETED, step_id=2, step_name="Charge")
        )
    lines = read_lines(path)
    assert [line["type"] for line in lines] == ["workflow_started", "step_completed"]
    assert lines[1]["workflow_id"] == "w1"
    assert lines[1]["step_name"] == "Charge"
    assert isinstance(lines[0]["time"], str)  # ISO 8601, as the core serializer writes it


async def test_reopening_appends_instead_of_truncating(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for workflow_id in ("w1", "w2"):
        async with JsonlLifecyclePublisher(path) as publisher:
            await publisher.publish(event(LifecycleEventType.WORKFLOW_COMPLETED, workflow_id))
    assert [line["workflow_id"] for line in read_lines(path)] == ["w1", "w2"]


async def test_concurrent_publishes_never_interleave_within_a_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    async with (
        JsonlLifecyclePublisher(path, fsync=True) as publisher,
        anyio.create_task_group() as tg,
    ):
        for i in range(50):
            tg.start_soon(publisher.publish, event(LifecycleEventType.STEP_STARTED, f"w{i}"))
    assert sorted(str(line["workflow_id"]) for line in read_lines(path)) == sorted(
        f"w{i}" for i in range(50)
    )


async def test_subscribers_receive_events_published_after_they_subscribe(tmp_path: Path) -> None:
    async with JsonlLifecyclePublisher(tmp_path / "events.jsonl") as publisher:
        await publisher.publish(event(LifecycleEventType.WORKFLOW_STARTED, "before"))
        events = publisher.subscribe()
        await publisher.publish(event(LifecycleEventType.WORKFLOW_STARTED, "after"))
        with anyio.fail_after(5):
            received = await events.__anext__()
    assert received.workflow_id == "after"


async def test_publishing_before_open_is_a_clear_error(tmp_path: Path) -> None:
    publisher = JsonlLifecyclePublisher(tmp_path / "events.jsonl")
    with pytest.raises(ProviderError, match="is not open"):
        await publisher.publish(event(LifecycleEventType.WORKFLOW_STARTED))


def test_url_names_the_file() -> None:
    assert path_from_url("jsonl:///var/log/wfe/events.jsonl") == "/var/log/wfe/events.jsonl"
    assert path_from_url("jsonl:events.jsonl") == "events.jsonl"
    assert path_from_url("jsonl:///tmp/with%20space.jsonl") == "/tmp/with space.jsonl"
    with pytest.raises(ConfigurationError, match="has no host"):
        path_from_url("jsonl://events.jsonl")


def test_settings_need_exactly_one_file(tmp_path: Path) -> None:
    from_url = JsonlLifecyclePublisher.from_settings("jsonl:///tmp/a.jsonl", JsonlOptions())
    assert str(from_url.path) == "/tmp/a.jsonl"
    from_options = JsonlLifecyclePublisher.from_settings(None, JsonlOptions(path="b.jsonl"))
    assert str(from_options.path) == "b.jsonl"
    with pytest.raises(ConfigurationError, match="needs a file"):
        JsonlLifecyclePublisher.from_settings(None, JsonlOptions())
    with pytest.raises(ConfigurationError, match="give one of them"):
        JsonlLifecyclePublisher.from_settings("jsonl:///tmp/a.jsonl", JsonlOptions(path="c"))


def test_the_plugin_registers_a_lifecycle_provider_through_the_hook(tmp_path: Path) -> None:
    # What a host does with the module its entry point names, with pluggy alone.
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name="example")
    pm.check_pending()  # no misspelled hook names
    (specs,) = pm.hook.register_providers()
    (spec,) = specs
    assert isinstance(spec, ProviderSpec)
    assert (spec.kind, spec.name, spec.url_schemes) == (ProviderKind.LIFECYCLE, "jsonl", ("jsonl",))
    built = spec.factory(f"jsonl://{tmp_path}/x.jsonl", JsonlOptions())
    assert isinstance(built, JsonlLifecyclePublisher)
    assert built.path == tmp_path / "x.jsonl"
