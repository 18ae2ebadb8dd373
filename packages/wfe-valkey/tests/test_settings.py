"""Settings by name and URL, the plugin's listing, options and URL errors, wrapped errors."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.errors import ConfigurationError, ProviderUnavailableError
from wfe_core.testing.conformance.servers import free_port
from wfe_host import WorkflowHost
from wfe_host.cli import main
from wfe_valkey.lifecycle import ValkeyLifecycle
from wfe_valkey.lock import ValkeyLock
from wfe_valkey.options import ValkeyOptions, parse_url
from wfe_valkey.queue import ValkeyQueue

if TYPE_CHECKING:
    from pathlib import Path


def test_wfe_providers_lists_the_three_valkey_providers() -> None:
    result = CliRunner().invoke(main, ["providers", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    ours = {p["kind"]: p for p in json.loads(result.stdout) if p["name"] == "valkey"}
    assert set(ours) == {"lock", "queue", "lifecycle"}
    for provider in ours.values():
        assert provider["distribution"] == "wfe-valkey"
        assert provider["url_schemes"] == ["valkey", "valkeys", "redis", "rediss"]
        assert provider["options"] == "ValkeyOptions"
        assert "distributed" in provider["capabilities"]
    assert "durable" not in ours["queue"]["capabilities"]  # memory only, lost on a restart
    assert {"dequeue-blocks", "queue-redelivery"} <= set(ours["queue"]["capabilities"])
    assert "lease-renewal" in ours["lock"]["capabilities"]


@pytest.mark.anyio
async def test_host_from_settings_uses_valkey_by_url_and_by_name(
    tmp_path: Path, valkey_url: str, options: ValkeyOptions
) -> None:
    prefix = options.key_prefix
    redis_url = valkey_url.replace("valkey://", "redis://", 1)
    settings = {
        "persistence": f"sqlite:///{tmp_path}/wfe.db",
        "lock": f"{valkey_url}?key_prefix={prefix}",  # the scheme selects the provider
        "queue": {"provider": "valkey", "url": redis_url, "options": {"key_prefix": prefix}},
        "lifecycle": {"url": valkey_url, "options": {"key_prefix": prefix}},
    }
    flow = WorkflowBuilder(dict).start_with(lambda ctx: None).build("settings-flow")
    async with WorkflowHost.from_settings(settings) as host:
        assert isinstance(host.lock, ValkeyLock)
        assert isinstance(host.queue, ValkeyQueue)
        assert isinstance(host.lifecycle, ValkeyLifecycle)
        assert host.queue.target.options.key_prefix == prefix
        assert host.lock.target.options.key_prefix == prefix
        host.register(flow)
        workflow_id = await host.start_workflow("settings-flow", {})
        finished = await host.wait_for_workflow(workflow_id, timeout=30)
        assert finished.status == WorkflowStatus.COMPLETE


def test_bad_options_from_settings_name_the_field(tmp_path: Path, valkey_url: str) -> None:
    settings = {
        "persistence": f"sqlite:///{tmp_path}/wfe.db",
        "queue": {"url": valkey_url, "options": {"max_block": -1}},
    }
    with pytest.raises(ConfigurationError, match="max_block"):
        WorkflowHost.from_settings(settings)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:6379", "the scheme must be one of valkey, valkeys, redis, rediss"),
        ("valkey://", "a host is required"),
        ("valkey://127.0.0.1:6379/zero", "the path must be a database number"),
        ("valkey://127.0.0.1:6379/0?prefix=x", "unknown parameter 'prefix'"),
        (
            "valkey://127.0.0.1:6379/0?retry_attempts=many",
            "retry_attempts='many' is not a valid int",
        ),
        ("valkey://127.0.0.1:6379/0?key_prefix={x}", "key_prefix must be letters"),
        ("valkey://127.0.0.1:6379/0?max_block=0", "max_block must be a finite number"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match="valkey") as caught:
        parse_url(url)
    assert problem in str(caught.value)


def test_url_options_win_and_passwords_stay_out_of_messages() -> None:
    target = parse_url(
        "rediss://user:s3cret@cache.example:6380/2?key_prefix=orders&max_block=0.5",
        ValkeyOptions(key_prefix="other", retry_attempts=3),
    )
    assert target.options.key_prefix == "orders"
    assert target.options.max_block == 0.5
    assert target.options.retry_attempts == 3
    assert "s3cret" not in target.display
    assert "s3cret" not in repr(target)
    assert target.url == "rediss://user:s3cret@cache.example:6380/2"


@pytest.mark.anyio
async def test_an_unreachable_server_is_an_unavailable_error_naming_it() -> None:
    port = free_port()
    options = ValkeyOptions(retry_attempts=3, retry_initial_wait=0.01, retry_timeout=2)
    queue = ValkeyQueue(f"valkey://127.0.0.1:{port}/0", options)
    with pytest.raises(
        ProviderUnavailableError, match=f"valkey ping on valkey://127.0.0.1:{port}/0 failed"
    ):
        await queue.open()


def test_listing_providers_does_not_import_the_valkey_client() -> None:
    # `wfe providers` imports every plugin module: it must stay fast.
    code = (
        "import sys, wfe_valkey.plugin, wfe_valkey; "
        "assert 'valkey' not in sys.modules, 'the plugin imported the client'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
