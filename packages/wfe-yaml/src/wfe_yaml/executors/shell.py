"""The ``shell`` step type: a bash (else sh) script, its output streamed line by line."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from wfe_core.providers.step_executor import StepExecutor
from wfe_core.results import ExecutionResult
from wfe_yaml import interpolation as ip
from wfe_yaml.durations import parse_duration
from wfe_yaml.errors import StepFailedError
from wfe_yaml.executors.common import (
    check_duration,
    check_env,
    check_source,
    check_string,
    config_schema,
    data_environment,
    parse_output_command,
)
from wfe_yaml.executors.process import LineEmitter, run_process
from wfe_yaml.steps import record_result

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wfe_core.step import StepContext

logger = logging.getLogger("wfe_yaml.shell")


def default_shell() -> str:
    """``bash`` when it is installed, else ``sh``."""
    return "bash" if shutil.which("bash") else "sh"


def shell_argv(shell: str, script: str | None, file: str | None) -> list[str]:
    """The command line running ``script`` (or the script ``file``) with ``shell``: bash
    without profiles, stopping at the first failing command (also inside pipelines)."""
    name = Path(shell).name
    flags = ["--noprofile", "--norc", "-eo", "pipefail"] if name == "bash" else ["-e"]
    if file is not None:
        return [shell, *flags, file]
    assert script is not None
    return [shell, *flags, "-c", script]


class ShellExecutor(StepExecutor):
    """Runs ``config.run`` (or the script ``config.file``) in a shell.

    References to workflow data in ``run`` become quoted environment variables, never code;
    all workflow data is in the environment too (``WFE_DATA`` as JSON, ``WFE_DATA_<KEY>``
    per key). Lines ``##wfe[output key=value]`` on stdout set outputs. A non-zero exit fails
    the step; ``timeout`` kills the whole process group.
    """

    interpolates_itself = True
    shell_code_keys = ("run",)
    static_keys = ("timeout", "shell", "file")
    config_keys: ClassVar[dict[str, str]] = {
        "run": "The script (shell code). ${{ inputs.x }} in it is passed as data, never code.",
        "file": "A script file to run instead (relative to the YAML file).",
        "shell": "The shell: bash (default when installed), sh, or a path.",
        "env": "Extra environment variables (values may use ${{ ... }}).",
        "working_dir": "Directory to run in (default: the current directory).",
        "timeout": "Kill the step's whole process group after this duration.",
    }

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """The JSON Schema of this type's ``config:``."""
        props: dict[str, Any] = {
            "run": {"type": "string"},
            "file": {"type": "string"},
            "shell": {"type": "string"},
            "env": {
                "type": "object",
                "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
            },
            "working_dir": {"type": "string"},
            "timeout": {"$ref": "#/$defs/duration"},
        }
        return config_schema(props, cls.config_keys, "run")

    def validate_config(self, config: Mapping[str, Any]) -> list[str]:
        """Problems of a shell step's ``config``."""
        problems: list[str] = []
        check_source(config, "shell", "run", problems)
        for key in ("shell", "working_dir"):
            check_string(config, key, problems)
        check_duration(config, "timeout", problems)
        check_env(config, problems)
        return problems

    def prepare_config(self, config: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
        """Resolve ``file`` against the YAML file's directory."""
        prepared = dict(config)
        file = prepared.get("file")
        if isinstance(file, str) and file:
            prepared["file"] = str((base_dir / file).resolve())
        return prepared

    async def execute(self, config: Mapping[str, Any], ctx: StepContext) -> ExecutionResult:
        """Run the script and turn its exit code and output commands into the result."""
        name = ctx.step.display_name
        data = ctx.data

        def resolve(ref: ip.Reference) -> Any:
            return ip.resolve(ref, data, {})

        script: str | None = None
        ref_env: dict[str, str] = {}
        if config.get("run") is not None:
            try:
                script, ref_env = ip.shell_safe(
                    str(config["run"]), resolve, only=lambda r: r.is_runtime, prefix="WFE_REF_"
                )
            except ip.InterpolationError as exc:
                # E.g. an integer input overwritten by a step's (string) output.
                raise StepFailedError(str(exc)) from exc
        env = dict(os.environ)
        env.update(data_environment(data))
        env.update(
            {
                "WFE_WORKFLOW_ID": ctx.workflow_id,
                "WFE_STEP_NAME": name,
                "WFE_IDEMPOTENCY_KEY": ctx.idempotency_key,
                "WFE_ATTEMPT": str(ctx.attempt),
            }
        )
        for key, value in (config.get("env") or {}).items():
            rendered = ip.render(value, resolve, only=lambda r: r.is_runtime)
            env[str(key)] = ip.to_text(rendered) if not isinstance(rendered, str) else rendered
        env.update(ref_env)
        working_dir = config.get("working_dir")
        if working_dir is not None:
            working_dir = ip.to_text(ip.render(working_dir, resolve, only=lambda r: r.is_runtime))
        timeout = parse_duration(config["timeout"]) if config.get("timeout") else None
        shell = str(config.get("shell") or default_shell())
        argv = shell_argv(shell, script, config.get("file"))
        outputs: dict[str, str] = {}
        emit = LineEmitter(ctx, name)

        def on_line(stream: str, line: str) -> bool:
            if stream == "stdout":
                command = parse_output_command(line)
                if command is not None:
                    outputs[command[0]] = command[1]
                    logger.debug("step %s output %s", name, command[0])
                    return False
            emit(stream, line)
            return True

        try:
            result = await run_process(
                argv, env=env, cwd=working_dir, timeout=timeout, on_line=on_line
            )
        except OSError as exc:
            raise StepFailedError(f"cannot run {shell!r}: {exc}") from exc
        record = result.record()
        record_result(ctx, record)
        if result.timed_out:
            raise StepFailedError(
                f"timed out after {config['timeout']} (its process group was killed)"
            )
        if result.exit_code != 0:
            detail = result.last_error_line()
            raise StepFailedError(
                f"exited with code {result.exit_code}" + (f": {detail}" if detail else "")
            )
        return ExecutionResult.outcome(record, output=outputs or None)
