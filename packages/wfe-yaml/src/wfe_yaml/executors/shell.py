"""The ``shell`` step type: a bash (else sh) script, its output streamed line by line."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from wfe_core import ExecutionResult
from wfe_core.providers import StepExecutor
from wfe_yaml import interpolation as ip
from wfe_yaml.durations import parse_duration
from wfe_yaml.errors import StepFailedError
from wfe_yaml.executors.common import (
    MAX_ENV_STRING,
    OUTPUT_COMMAND_PREFIX,
    check_duration,
    check_env,
    check_source,
    check_string,
    config_schema,
    data_environment,
    env_size,
    kib,
    parse_output_command,
)
from wfe_yaml.executors.outputs import StepFiles, make_step_files
from wfe_yaml.executors.process import MAX_PARSED_LINE, LineEmitter, run_process
from wfe_yaml.steps import record_result

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from wfe_core import StepContext

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
    all workflow data is in the JSON file ``$WFE_DATA_FILE`` and, when small enough, in the
    environment too (``WFE_DATA`` as JSON, ``WFE_DATA_<KEY>`` per key). The script sets
    outputs by writing ``$WFE_OUTPUT`` or ``$WFE_OUTPUTS/<key>`` (see
    :mod:`wfe_yaml.executors.outputs`); ``##wfe[output key=value]`` lines on stdout count
    only with ``stdout_outputs: true``. A non-zero exit fails the step; ``timeout`` kills the
    whole process group.
    """

    interpolates_itself = True
    shell_code_keys = ("run",)
    static_keys = ("timeout", "shell", "file", "stdout_outputs")
    config_keys: ClassVar[dict[str, str]] = {
        "run": "The script (shell code). ${{ inputs.x }} in it is passed as data, never code.",
        "file": "A script file to run instead (relative to the YAML file).",
        "shell": "The shell: bash (default when installed), sh, or a path.",
        "env": "Extra environment variables (values may use ${{ ... }}).",
        "working_dir": "Directory to run in (default: the current directory).",
        "timeout": "Kill the step's whole process group after this duration.",
        "stdout_outputs": "true: stdout lines ##wfe[output key=value] set outputs too. "
        "Dangerous: any data the step prints (an input, a payload, a file) can then forge "
        "outputs. Prefer writing key=value to $WFE_OUTPUT.",
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
            "stdout_outputs": {"type": "boolean"},
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
        stdout_outputs = config.get("stdout_outputs")
        if stdout_outputs is not None and not isinstance(stdout_outputs, bool):
            problems.append("stdout_outputs: must be true or false")
        run = config.get("run")
        if isinstance(run, str) and OUTPUT_COMMAND_PREFIX in run and stdout_outputs is not True:
            # Such a script worked before stdout outputs became opt-in; refuse it rather than
            # let its outputs go missing.
            problems.append(
                "run: prints `##wfe[output ...]`, which sets no output unless "
                'stdout_outputs: true; write `echo "key=value" >> "$WFE_OUTPUT"` instead'
            )
        return problems

    def prepare_config(self, config: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
        """Resolve ``file`` against the YAML file's directory."""
        prepared = dict(config)
        file = prepared.get("file")
        if isinstance(file, str) and file:
            prepared["file"] = str((base_dir / file).resolve())
        return prepared

    async def execute(self, config: Mapping[str, Any], ctx: StepContext) -> ExecutionResult:
        """Run the script and turn its exit code and output files into the result."""
        # File work happens in a thread: the data and the outputs may be megabytes.
        files = await anyio.to_thread.run_sync(make_step_files)
        try:
            record, failure, outputs = await self._execute(config, ctx, files)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(shutil.rmtree, files.folder, True)
        # The pointer changes only here, after the last await: the engine may write the
        # instance while a step body waits, and expects a step's pointer to change only as
        # the step returns.
        record_result(ctx, record)
        if failure is not None:
            raise failure
        return ExecutionResult.outcome(record, output=outputs or None)

    async def _execute(
        self, config: Mapping[str, Any], ctx: StepContext, files: StepFiles
    ) -> tuple[dict[str, Any], StepFailedError | None, dict[str, str]]:
        """Run the step: its result record, why it failed (if it did) and its outputs."""
        name = ctx.step.display_name
        data = ctx.data
        emit = LineEmitter(ctx, name)

        def resolve(ref: ip.Reference) -> Any:
            return ip.resolve(ref, data, {})

        script: str | None = None
        ref_env: dict[str, str] = {}
        if config.get("run") is not None:
            run = str(config["run"])
            _check_references(run, resolve)
            try:
                script, ref_env = ip.shell_safe(
                    run, resolve, only=lambda r: r.is_runtime, prefix="WFE_REF_"
                )
            except ip.InterpolationError as exc:
                # E.g. an integer input overwritten by a step's (string) output.
                raise StepFailedError(str(exc)) from exc
        await anyio.to_thread.run_sync(files.write_data, data)
        data_env, omitted = data_environment(data)
        if omitted:
            emit(
                "wfe",
                "not set, too large for the environment: "
                + ", ".join(omitted)
                + "; all workflow data is in $WFE_DATA_FILE (JSON)",
            )
        env = dict(os.environ)
        env.update(data_env)
        env.update(
            {
                "WFE_WORKFLOW_ID": ctx.workflow_id,
                "WFE_STEP_NAME": name,
                "WFE_IDEMPOTENCY_KEY": ctx.idempotency_key,
                "WFE_ATTEMPT": str(ctx.attempt),
                **files.environment(),
            }
        )
        for key, value in (config.get("env") or {}).items():
            rendered = ip.render(value, resolve, only=lambda r: r.is_runtime)
            text = ip.to_text(rendered) if not isinstance(rendered, str) else rendered
            if env_size(str(key), text) > MAX_ENV_STRING:
                raise StepFailedError(
                    f"config.env.{key} is {kib(len(text.encode()))}, over the "
                    f"{kib(MAX_ENV_STRING)} one environment variable may hold (Linux's "
                    "MAX_ARG_STRLEN); read large data from $WFE_DATA_FILE (JSON) instead"
                )
            env[str(key)] = text
        env.update(ref_env)
        working_dir = config.get("working_dir")
        if working_dir is not None:
            working_dir = ip.to_text(ip.render(working_dir, resolve, only=lambda r: r.is_runtime))
        timeout = parse_duration(config["timeout"]) if config.get("timeout") else None
        shell = str(config.get("shell") or default_shell())
        argv = shell_argv(shell, script, config.get("file"))
        reader = _StdoutCommands(emit, enabled=config.get("stdout_outputs") is True)
        try:
            result = await run_process(
                argv, env=env, cwd=working_dir, timeout=timeout, on_line=reader.on_line
            )
        except OSError as exc:
            if exc.errno == errno.E2BIG:
                raise StepFailedError(
                    f"cannot start {shell!r}: its environment and command line are over the "
                    "system's limit (Argument list too long); pass large values through "
                    "$WFE_DATA_FILE rather than env: or a long script"
                ) from exc
            raise StepFailedError(f"cannot run {shell!r}: {exc}") from exc
        record = result.record()
        if result.timed_out:
            failure = StepFailedError(
                f"timed out after {config['timeout']} (its process group was killed)"
            )
            return record, failure, {}
        if result.exit_code != 0:
            detail = result.last_error_line()
            failure = StepFailedError(
                f"exited with code {result.exit_code}" + (f": {detail}" if detail else "")
            )
            return record, failure, {}
        if reader.problem is not None:
            return record, StepFailedError(reader.problem), {}
        # Outputs count only when the step succeeded (a failed step's data is not merged,
        # so hooks and later steps never see half of what a broken script wrote).
        outputs = dict(reader.outputs)
        try:
            written = await anyio.to_thread.run_sync(files.read_outputs)
        except StepFailedError as exc:
            return record, exc, {}
        for key, value in written.items():
            if key in outputs:
                failure = StepFailedError(
                    f"output {key!r} is set twice: on stdout and in $WFE_OUTPUT(S)"
                )
                return record, failure, {}
            outputs[key] = value
        return record, None, outputs


def _check_references(run: str, resolve: Callable[[ip.Reference], Any]) -> None:
    """A step failure when a ``${{ ... }}`` in ``run`` holds more than an environment
    variable can carry (exec would fail with ``Argument list too long``)."""
    for ref in ip.references(run):
        if not ref.is_runtime:
            continue
        size = len(ip.to_text(resolve(ref)).encode("utf-8", "surrogateescape"))
        # The variable's name (WFE_REF_<n>_<path>) is short next to the limit.
        if size + 64 + len(ref.dotted) > MAX_ENV_STRING:
            raise StepFailedError(
                f"${{{{ {ref.dotted} }}}} in config.run is {kib(size)}, over the "
                f"{kib(MAX_ENV_STRING)} one environment variable may hold (Linux's "
                "MAX_ARG_STRLEN), so it cannot be passed to the script; read it from "
                f"$WFE_DATA_FILE (JSON) instead, e.g. jq -r '.{'.'.join(ref.path)}' "
                '"$WFE_DATA_FILE"'
            )


class _StdoutCommands:
    """Reads ``##wfe[output key=value]`` lines on stdout when the step opted in, and says
    once that they set nothing when it did not."""

    def __init__(self, emit: LineEmitter, *, enabled: bool) -> None:
        self.emit = emit
        self.enabled = enabled
        self.outputs: dict[str, str] = {}
        self.problem: str | None = None
        self.warned = False

    def on_line(self, stream: str, line: str, cut: bool) -> bool:
        if stream == "stdout" and line.startswith(OUTPUT_COMMAND_PREFIX):
            if not self.enabled:
                if not self.warned:
                    self.warned = True
                    self.emit(
                        "wfe",
                        "stdout `##wfe[output ...]` lines set no output unless "
                        "config.stdout_outputs is true; the script should write "
                        '`key=value` lines to "$WFE_OUTPUT"',
                    )
            elif cut:
                self.problem = self.problem or (
                    f"an `##wfe[output ...]` line on stdout is over the limit of "
                    f"{MAX_PARSED_LINE // (1024 * 1024)} MiB"
                )
                return False
            else:
                command = parse_output_command(line)
                if command is not None:
                    self.outputs[command[0]] = command[1]
                    logger.debug("output %s from stdout", command[0])
                    return False
        self.emit(stream, line, cut)
        return True
