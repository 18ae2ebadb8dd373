"""Deno steps cannot reach files outside their grants: not by importing them (statically,
dynamically, as JSON), and not through a symbolic link inside a granted folder. Each test
plants a secret (or a file that must not be written) and runs the real Deno binary."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from wfe_core.models import WorkflowStatus
from wfe_yaml_support import pointers, result_of, run_yaml

if TYPE_CHECKING:
    from pathlib import Path

    from wfe_core.models import WorkflowInstance

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-canary"


def inline_flow(script: str, permissions: str = "{}") -> str:
    body = "\n".join("          " + line for line in script.strip().splitlines())
    return (
        "workflow:\n  id: sandbox\n  steps:\n    - name: Script\n      type: deno\n"
        f"      config:\n        timeout: 30s\n        permissions: {permissions}\n"
        f"        script: |\n{body}\n"
    )


def file_flow(file: str, permissions: str = "{}") -> str:
    return (
        "workflow:\n  id: sandbox\n  steps:\n    - name: Script\n      type: deno\n"
        f"      config: {{file: {file}, timeout: 30s, permissions: {permissions}}}\n"
    )


def error_of(instance: WorkflowInstance) -> str:
    [step] = pointers(instance, "Script")
    return step.error or ""


def leaked(instance: WorkflowInstance) -> bool:
    """Whether the secret shows anywhere: outputs, printed lines or the error."""
    found = pointers(instance, "Script")
    seen = json.dumps(instance.data) + error_of(instance)
    if found and "result" in found[-1].extensions:
        seen += json.dumps(result_of(instance, "Script"))
    return SECRET in seen


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A folder no step is granted, holding a JSON, a JavaScript and a text secret."""
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "secret.json").write_text(json.dumps({"s": SECRET}))
    (folder / "mod.js").write_text(f'export const s = "{SECRET}";\n')
    (folder / "secret.txt").write_text(SECRET)
    return folder


# --- imports --------------------------------------------------------------------------------

IMPORTS = {
    "static json": 'import c from "{url}/secret.json" with {{type: "json"}};\nconsole.log(c.s);',
    "static js": 'import {{ s }} from "{url}/mod.js";\nconsole.log(s);',
    "literal import() of json": (
        'const c = await import("{url}/secret.json", {{with: {{type: "json"}}}});\n'
        "console.log(c.default.s);"
    ),
    "literal import() of js": 'const m = await import("{url}/mod.js");\nconsole.log(m.s);',
    "computed import()": (
        'const m = await import(["{url}", "mod.js"].join("/"));\nconsole.log(m.s);'
    ),
    "worker": (
        'const w = new Worker("{url}/mod.js", {{type: "module"}});\n'
        "await new Promise((_, reject) => {{ w.onerror = (e) => {{ e.preventDefault(); "
        "reject(new Error(e.message)); }}; }});"
    ),
}


@pytest.mark.parametrize("how", list(IMPORTS))
async def test_an_inline_script_cannot_import_an_ungranted_file(secret: Path, how: str) -> None:
    script = IMPORTS[how].format(url=secret.as_uri())
    instance = await run_yaml(inline_flow(script))
    assert instance.status == WorkflowStatus.FAILED
    assert "Requires read access" in error_of(instance)
    assert not leaked(instance)


@pytest.mark.parametrize("how", ["static json", "static js", "literal import() of js"])
async def test_a_read_grant_allows_importing(secret: Path, how: str) -> None:
    script = IMPORTS[how].format(url=secret.as_uri())
    instance = await run_yaml(inline_flow(script, f'{{read: ["{secret}"]}}'))
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance)
    assert leaked(instance)  # the grant is what made it readable


@pytest.mark.parametrize("how", list(IMPORTS))
async def test_a_script_file_cannot_import_an_ungranted_file(
    tmp_path: Path, secret: Path, how: str
) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "main.ts").write_text(IMPORTS[how].format(url=secret.as_uri()))
    instance = await run_yaml(file_flow("steps/main.ts"), base_dir=tmp_path)
    assert instance.status == WorkflowStatus.FAILED
    error = error_of(instance)
    assert "Requires read access" in error or "needs a read grant" in error, error
    assert not leaked(instance)


async def test_a_static_import_outside_the_scripts_folder_is_refused_before_running(
    tmp_path: Path, secret: Path
) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "main.ts").write_text(
        'import { s } from "../secret/mod.js";\nconsole.log(s);\n'
    )
    instance = await run_yaml(file_flow("steps/main.ts"), base_dir=tmp_path)
    assert instance.status == WorkflowStatus.FAILED
    assert error_of(instance) == (
        f"StepFailedError: {secret}/mod.js, imported by {tmp_path}/steps/main.ts, is outside "
        f"the step's own files ({tmp_path}/steps/...); importing it needs a read grant that "
        "covers it"
    )
    assert pointers(instance, "Script")[-1].extensions.get("result") is None  # never ran


async def test_a_linked_module_leading_out_of_the_scripts_folder_is_refused(
    tmp_path: Path, secret: Path
) -> None:
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "lib.js").symlink_to(secret / "mod.js")
    (steps / "main.ts").write_text('import { s } from "./lib.js";\nconsole.log(s);\n')
    instance = await run_yaml(file_flow("steps/main.ts"), base_dir=tmp_path)
    assert instance.status == WorkflowStatus.FAILED
    assert f"{steps}/lib.js, imported by {steps}/main.ts, is outside" in error_of(instance)
    assert not leaked(instance)


async def test_a_script_file_that_links_out_of_its_folder_is_refused(
    tmp_path: Path, secret: Path
) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "main.js").symlink_to(secret / "mod.js")
    instance = await run_yaml(file_flow("steps/main.js"), base_dir=tmp_path)
    assert instance.status == WorkflowStatus.FAILED
    assert f"{tmp_path}/steps/main.js is outside the step's own files" in error_of(instance)


async def test_read_true_imports_anything(tmp_path: Path, secret: Path) -> None:
    (tmp_path / "main.ts").write_text(f'import {{ s }} from "{secret.as_uri()}/mod.js";\n')
    instance = await run_yaml(file_flow("main.ts", "{read: true}"), base_dir=tmp_path)
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance)


async def test_a_script_file_imports_its_own_modules(tmp_path: Path) -> None:
    steps = tmp_path / "steps"
    (steps / "plugins").mkdir(parents=True)
    (steps / "lib").mkdir()
    (steps / "lib" / "math.ts").write_text("export const double = (n: number) => 2 * n;\n")
    (steps / "inner.ts").symlink_to(steps / "lib" / "math.ts")  # a link that stays inside
    (steps / "plugins" / "seven.ts").write_text("export const n = 7;\n")
    (steps / "main.ts").write_text(
        'import { double } from "./lib/math.ts";\n'
        'import { double as twice } from "./inner.ts";\n'
        'const name = ["se", "ven"].join("");\n'
        "const plugin = await import(`./plugins/${name}.ts`);\n"
        'Wfe.setOutput("n", twice(double(plugin.n)));\n'
    )
    instance = await run_yaml(file_flow("steps/main.ts"), base_dir=tmp_path)
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance)
    assert instance.data == {"n": 28}


async def test_a_json_file_beside_the_script_needs_a_read_grant(tmp_path: Path) -> None:
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "config.json").write_text(json.dumps({"s": SECRET}))
    (steps / "main.ts").write_text(
        'import c from "./config.json" with {type: "json"};\nWfe.setOutput("s", c.s);\n'
    )
    denied = await run_yaml(file_flow("steps/main.ts"), base_dir=tmp_path)
    assert denied.status == WorkflowStatus.FAILED
    assert f"{steps}/config.json, imported by {steps}/main.ts, is a data module" in error_of(denied)
    assert not leaked(denied)
    granted = await run_yaml(
        file_flow("steps/main.ts", f'{{read: ["{steps}/config.json"]}}'), base_dir=tmp_path
    )
    assert granted.status == WorkflowStatus.COMPLETE, error_of(granted)
    assert granted.data == {"s": SECRET}


async def test_a_changed_script_file_is_checked_again(tmp_path: Path, secret: Path) -> None:
    # The graph is cached per file; an edit that adds an import must not reuse the old grant.
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "lib.ts").write_text("export const s = 'harmless';\n")
    (steps / "main.ts").write_text('import { s } from "./lib.ts";\nWfe.setOutput("s", s);\n')
    first = await run_yaml(file_flow("steps/main.ts"), base_dir=tmp_path)
    assert first.data == {"s": "harmless"}, error_of(first)
    (steps / "lib.ts").write_text(f'export {{ s }} from "{secret.as_uri()}/mod.js";\n')
    second = await run_yaml(file_flow("steps/main.ts"), base_dir=tmp_path)
    assert second.status == WorkflowStatus.FAILED
    assert f"{secret}/mod.js, imported by {steps}/lib.ts, is outside" in error_of(second)
    assert not leaked(second)


async def test_a_missing_module_is_named(tmp_path: Path) -> None:
    (tmp_path / "main.ts").write_text('import "./nowhere.ts";\n')
    instance = await run_yaml(file_flow("main.ts"), base_dir=tmp_path)
    assert instance.status == WorkflowStatus.FAILED
    assert f"cannot load {tmp_path}/nowhere.ts (imported by {tmp_path}/main.ts)" in error_of(
        instance
    )


# --- symbolic links in grants -------------------------------------------------------------


async def test_a_read_grant_does_not_reach_through_a_link(tmp_path: Path, secret: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "deep").mkdir(parents=True)
    (allowed / "deep" / "link").symlink_to(secret / "secret.txt")
    script = f'Wfe.setOutput("s", Deno.readTextFileSync("{allowed}/deep/link"));'
    instance = await run_yaml(inline_flow(script, f'{{read: ["{allowed}"]}}'))
    assert instance.status == WorkflowStatus.FAILED
    assert error_of(instance) == (
        f"StepFailedError: permissions.read: {allowed}/deep/link is a symbolic link to "
        f"{secret}/secret.txt, outside every read grant; remove the link or grant its target"
    )
    assert not leaked(instance)


async def test_a_linked_folder_in_a_read_grant_is_refused(tmp_path: Path, secret: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "dir").symlink_to(secret)
    script = f'const m = await import(["{allowed.as_uri()}", "dir", "mod.js"].join("/"));'
    instance = await run_yaml(inline_flow(script, f'{{read: ["{allowed}"]}}'))
    assert instance.status == WorkflowStatus.FAILED
    assert f"{allowed}/dir is a symbolic link to {secret}, outside" in error_of(instance)
    assert not leaked(instance)


async def test_a_granted_path_that_is_a_link_is_refused(tmp_path: Path, secret: Path) -> None:
    (tmp_path / "data").symlink_to(secret)
    script = f'Wfe.setOutput("s", Deno.readTextFileSync("{tmp_path}/data/secret.txt"));'
    instance = await run_yaml(inline_flow(script, f'{{read: ["{tmp_path}/data"]}}'))
    assert instance.status == WorkflowStatus.FAILED
    assert error_of(instance) == (
        f"StepFailedError: permissions.read: '{tmp_path}/data' leads through a symbolic link "
        f"to {secret}; grant the real path instead (a link in a granted path could point "
        "anywhere)"
    )
    assert not leaked(instance)


async def test_a_write_grant_does_not_reach_through_a_link(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "kept.txt").write_text("original")
    (allowed / "kept").symlink_to(outside / "kept.txt")
    (allowed / "dangling").symlink_to(outside / "created.txt")  # a write would create it
    script = (
        f'Deno.writeTextFileSync("{allowed}/dangling", "pwned");\n'
        f'Deno.writeTextFileSync("{allowed}/kept", "pwned");'
    )
    instance = await run_yaml(inline_flow(script, f'{{write: ["{allowed}"]}}'))
    assert instance.status == WorkflowStatus.FAILED
    assert "permissions.write: " in error_of(instance)
    assert "outside every write grant" in error_of(instance)
    assert not (outside / "created.txt").exists()
    assert (outside / "kept.txt").read_text() == "original"


async def test_links_between_grants_are_allowed(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (two / "file.txt").write_text("shared")
    (one / "link").symlink_to(two / "file.txt")
    (one / "self").symlink_to(one)
    script = f'Wfe.setOutput("s", Deno.readTextFileSync("{one}/link"));'
    instance = await run_yaml(inline_flow(script, f'{{read: ["{one}", "{two}"]}}'))
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance)
    assert instance.data == {"s": "shared"}


async def test_a_link_to_a_read_only_grant_is_refused_for_write(tmp_path: Path) -> None:
    readable, writable = tmp_path / "readable", tmp_path / "writable"
    readable.mkdir()
    writable.mkdir()
    (readable / "file.txt").write_text("original")
    (writable / "link").symlink_to(readable / "file.txt")
    script = f'Deno.writeTextFileSync("{writable}/link", "pwned");'
    permissions = f'{{read: ["{readable}", "{writable}"], write: ["{writable}"]}}'
    instance = await run_yaml(inline_flow(script, permissions))
    assert instance.status == WorkflowStatus.FAILED
    assert "outside every write grant" in error_of(instance)
    assert (readable / "file.txt").read_text() == "original"


async def test_a_comma_in_a_granted_path_is_refused(tmp_path: Path) -> None:
    instance = await run_yaml(inline_flow("Wfe.log(1);", f'{{read: ["{tmp_path}/a,/etc"]}}'))
    assert instance.status == WorkflowStatus.FAILED
    assert "contains a comma, which Deno would split" in error_of(instance)
