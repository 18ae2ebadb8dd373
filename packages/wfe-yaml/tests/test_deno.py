"""Deno steps with the real Deno binary: data in, outputs out, and every permission denied
unless granted. Network tests only touch loopback servers started here."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from wfe_core.models import WorkflowStatus
from wfe_yaml_support import pointers, result_of, run_yaml

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from wfe_core.models import WorkflowInstance

pytestmark = pytest.mark.anyio


class Server:
    """A loopback HTTP server on a free port that counts its requests."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                status, headers, body = routes.get(self.path, (404, {}, b"missing"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    """An allowed server and a forbidden one; the allowed one redirects to the other."""
    forbidden = Server({"/secret": (200, {}, b"secret data")})
    allowed = Server(
        {
            "/hello": (200, {}, b"hello from loopback"),
            "/redirect": (302, {"Location": f"http://{forbidden.host}/secret"}, b""),
            "/mod.js": (
                200,
                {"Content-Type": "application/javascript"},
                b"export const answer = 42;\n",
            ),
        }
    )
    try:
        yield allowed, forbidden
    finally:
        allowed.close()
        forbidden.close()


def deno_flow(script: str, permissions: str = "{}", timeout: str = "30s") -> str:
    body = "\n".join("          " + line for line in script.strip().splitlines())
    return f"""
workflow:
  id: deno
  inputs: {{version: string?}}
  steps:
    - name: Script
      type: deno
      config:
        timeout: {timeout}
        permissions: {permissions}
        script: |
{body}
"""


async def run_script(
    script: str, permissions: str = "{}", data: dict[str, Any] | None = None
) -> WorkflowInstance:
    return await run_yaml(deno_flow(script, permissions), data)


def error_of(instance: WorkflowInstance) -> str:
    [step] = pointers(instance, "Script")
    return step.error or ""


async def test_data_outputs_and_logs() -> None:
    instance = await run_script(
        """
const data: { version: string } = Wfe.getData();
console.log("##wfe[output status=forged]");
Wfe.log("building", { v: data.version });
Wfe.setOutput("status", `built ${data.version}`);
Wfe.setOutput("count", 3);
Wfe.setOutput("tags", ["a", "b"]);
""",
        data={"version": "1.10"},
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance)
    # The script's own print of an output command is just a line of output.
    assert instance.data == {
        "version": "1.10",
        "status": "built 1.10",
        "count": 3,
        "tags": ["a", "b"],
    }
    result = result_of(instance, "Script")
    assert result["exit_code"] == 0
    assert result["stdout"] == "##wfe[output status=forged]"


async def test_forging_the_channel_is_impossible() -> None:
    # Even bytes that look like the channel's separators do not make an output.
    instance = await run_script(
        r"""
const fake = JSON.stringify({kind: "output", key: "x", value: 1});
console.log("\x1e" + "0".repeat(32) + "\x1f" + fake);
await Deno.stdout.write(new TextEncoder().encode('{"kind":"output","key":"y","value":2}\n'));
""",
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance)
    assert instance.data == {}


async def test_a_throwing_script_fails_the_step() -> None:
    instance = await run_script('throw new Error("broken on purpose");')
    assert instance.status == WorkflowStatus.FAILED
    assert error_of(instance) == (
        "StepFailedError: deno exited with code 1: Uncaught Error: broken on purpose"
    )


async def test_net_allowed_host(servers: tuple[Server, Server]) -> None:
    allowed, _ = servers
    instance = await run_script(
        f'const r = await fetch("http://{allowed.host}/hello");\n'
        'Wfe.setOutput("body", await r.text());',
        permissions=f'{{net: ["{allowed.host}"]}}',
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance)
    assert instance.data["body"] == "hello from loopback"


async def test_net_denied_by_default(servers: tuple[Server, Server]) -> None:
    allowed, _ = servers
    instance = await run_script(f'await fetch("http://{allowed.host}/hello");')
    assert instance.status == WorkflowStatus.FAILED
    assert "Requires net access" in error_of(instance)
    assert allowed.hits == []


async def test_net_other_host_denied(servers: tuple[Server, Server]) -> None:
    allowed, forbidden = servers
    instance = await run_script(
        f'await fetch("http://{forbidden.host}/secret");',
        permissions=f'{{net: ["{allowed.host}"]}}',
    )
    assert instance.status == WorkflowStatus.FAILED
    assert "Requires net access" in error_of(instance)
    assert forbidden.hits == []


async def test_redirect_to_a_non_allowed_host_is_denied(servers: tuple[Server, Server]) -> None:
    allowed, forbidden = servers
    instance = await run_script(
        f'const r = await fetch("http://{allowed.host}/redirect");\n'
        'Wfe.setOutput("body", await r.text());',
        permissions=f'{{net: ["{allowed.host}"]}}',
    )
    assert instance.status == WorkflowStatus.FAILED
    assert "Requires net access" in error_of(instance)
    assert allowed.hits == ["/redirect"]
    assert forbidden.hits == []
    assert "body" not in instance.data


async def test_read_permission(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    script = f'Wfe.setOutput("text", Deno.readTextFileSync("{secret}"));'
    denied = await run_script(script)
    assert denied.status == WorkflowStatus.FAILED
    assert "Requires read access" in error_of(denied)
    granted = await run_script(script, permissions=f'{{read: ["{tmp_path}"]}}')
    assert granted.data["text"] == "top secret"


@pytest.mark.parametrize("name", ["../wfe_prelude.js", "../main.js"])
async def test_the_executors_own_files_are_not_readable(name: str) -> None:
    instance = await run_script(f'Deno.readTextFileSync(new URL("{name}", import.meta.url));')
    assert instance.status == WorkflowStatus.FAILED
    assert "Requires read access" in error_of(instance)


async def test_a_script_may_read_its_own_source() -> None:
    # Deno needs read on the script's file to load it at run time (so that its imports are
    # checked); that grant reaches nothing but the script itself.
    instance = await run_script(
        'Wfe.setOutput("n", Deno.readTextFileSync(new URL(import.meta.url)).length);'
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance)


async def test_write_permission(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    script = f'Deno.writeTextFileSync("{target}", "written");'
    denied = await run_script(script)
    assert denied.status == WorkflowStatus.FAILED
    assert "Requires write access" in error_of(denied)
    assert not target.exists()
    granted = await run_script(script, permissions=f'{{write: ["{tmp_path}"]}}')
    assert granted.status == WorkflowStatus.COMPLETE, error_of(granted)
    assert target.read_text() == "written"


async def test_env_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_TEST_VISIBLE", "visible")
    monkeypatch.setenv("WFE_TEST_HIDDEN", "hidden")
    denied = await run_script('Deno.env.get("WFE_TEST_VISIBLE");')
    assert "Requires env access" in error_of(denied)
    granted = await run_script(
        'Wfe.setOutput("v", Deno.env.get("WFE_TEST_VISIBLE"));\nDeno.env.get("WFE_TEST_HIDDEN");',
        permissions='{env: ["WFE_TEST_VISIBLE"]}',
    )
    # The granted name is readable; the other one still is not.
    assert "Requires env access" in error_of(granted)
    assert "WFE_TEST_HIDDEN" in error_of(granted)


async def test_run_permission() -> None:
    script = (
        'const out = new Deno.Command("echo", {args: ["ran"]}).outputSync();\n'
        'Wfe.setOutput("out", new TextDecoder().decode(out.stdout).trim());'
    )
    denied = await run_script(script)
    assert "Requires run access" in error_of(denied)
    granted = await run_script(script, permissions="{run: true}")
    assert granted.data["out"] == "ran"


async def test_dynamic_import_permission(servers: tuple[Server, Server]) -> None:
    allowed, _ = servers
    script = (
        f'const url = ["http://{allowed.host}", "mod.js"].join("/");\n'
        'const mod = await import(url);\nWfe.setOutput("answer", mod.answer);'
    )
    denied = await run_script(script)
    assert denied.status == WorkflowStatus.FAILED
    assert allowed.hits == []
    granted = await run_script(script, permissions="{dynamic_import: true}")
    assert granted.status == WorkflowStatus.COMPLETE, error_of(granted)
    assert granted.data["answer"] == 42


async def test_an_infinite_loop_is_killed_by_the_timeout() -> None:
    started = time.monotonic()
    instance = await run_yaml(deno_flow("while (true) {}", timeout="1s"))
    assert time.monotonic() - started < 20
    assert instance.status == WorkflowStatus.FAILED
    assert "timed out after 1s" in error_of(instance)
    assert result_of(instance, "Script")["timed_out"] is True


async def test_script_file_with_a_local_import(tmp_path: Path) -> None:
    (tmp_path / "lib.ts").write_text(
        "export function double(n: number): number { return 2 * n; }\n"
    )
    (tmp_path / "main.ts").write_text(
        'import { double } from "./lib.ts";\nWfe.setOutput("n", double(21));\n'
    )
    instance = await run_yaml(
        "workflow:\n  id: f\n  steps:\n    - name: Script\n      type: deno\n"
        "      config: {file: main.ts}\n",
        base_dir=tmp_path,
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance)
    assert instance.data == {"n": 42}
