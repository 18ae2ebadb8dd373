"""The ``wait`` step type: waits for an external event (``wfe_core``'s ``WaitFor``), with an
optional timeout whose ``on_timeout:`` steps run when it fires."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from wfe_core import ExecutionResult
from wfe_core.primitives import TIMEOUT_OUTCOME, WaitFor
from wfe_core.providers import StepExecutor
from wfe_yaml import interpolation as ip
from wfe_yaml.durations import parse_duration
from wfe_yaml.errors import StepFailedError
from wfe_yaml.executors.common import check_duration, check_output_name, config_schema, value_output
from wfe_yaml.steps import record_result

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wfe_core import StepContext

#: What the step keeps in ``ctx.persistence_data`` while its ``on_timeout:`` steps run.
_TIMED_OUT = {"timed_out": True}


class WaitExecutor(StepExecutor):
    """Waits for the event ``config.event`` with key ``config.key`` (published at or after
    ``effective_date`` when given, else at any time, also before the step started).

    The event's data becomes the step's output: under the name ``config.output`` when given,
    else a mapping's keys are the outputs (like the ``name=value`` lines of a shell step).
    With ``timeout``, the step gives up waiting when it expires: its outcome is ``timeout``,
    ``config.output`` (when given) is set to null, and the step's ``on_timeout:`` steps run
    before the workflow goes on.
    """

    static_keys = ("timeout", "output")
    #: The config key naming where the step's result goes in the workflow data (the loader
    #: refuses one named like a declared input).
    output_key = "output"
    #: The config key whose duration makes the step's ``on_timeout:`` steps run (read by
    #: the loader: only step types that have one take ``on_timeout:``).
    timeout_key = "timeout"
    config_keys: ClassVar[dict[str, str]] = {
        "event": "The name of the event to wait for.",
        "key": "The event's key (e.g. an order id; values may use ${{ ... }}).",
        "effective_date": "Only events published at or after this date-time (ISO 8601, "
        "e.g. 2030-01-01T09:00:00Z; may use ${{ ... }}). Default: any, also earlier ones.",
        "timeout": "Stop waiting after this long (a duration); `on_timeout:` steps run then.",
        "output": "The name the event's data is stored under (default: a mapping's keys).",
    }

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """The JSON Schema of this type's ``config:``."""
        props: dict[str, Any] = {
            "event": {"type": "string", "minLength": 1},
            "key": {"type": ["string", "number"]},
            "effective_date": {"type": "string"},
            "timeout": {"$ref": "#/$defs/duration"},
            "output": {"type": "string", "minLength": 1},
        }
        return config_schema(props, cls.config_keys, required=["event", "key"])

    def validate_config(self, config: Mapping[str, Any]) -> list[str]:
        """Problems of a wait step's ``config`` (what is known before it runs)."""
        problems: list[str] = []
        event = config.get("event")
        if not isinstance(event, str) or not event.strip():
            problems.append("missing `event`: the name of the event to wait for")
        key = config.get("key")
        if key is None:
            problems.append("missing `key`: the key of the event to wait for")
        elif isinstance(key, bool) or not isinstance(key, str | int | float):
            problems.append("key: must be a string or a number")
        date = config.get("effective_date")
        if date is not None:
            if not isinstance(date, str):
                problems.append("effective_date: must be a date-time (ISO 8601)")
            elif not _has_references(date):
                try:
                    effective_date(date)
                except ValueError as exc:
                    problems.append(f"effective_date: {exc}")
        check_duration(config, "timeout", problems)
        check_output_name(config, problems)
        return problems

    async def execute(self, config: Mapping[str, Any], ctx: StepContext) -> ExecutionResult:
        """Wait (the step runs again when the event comes or the timeout fires)."""
        output_name = config.get("output")
        if ctx.persistence_data == _TIMED_OUT:
            # Back after the on_timeout steps ran.
            return _timed_out(output_name)
        body = WaitFor()
        body.event_name = str(config["event"])
        if config["key"] is None or not str(config["key"]).strip():
            # A reference to data that is not set: no event could ever be meant.
            raise StepFailedError(
                f"the event key is empty ({config['key']!r}): the data it refers to is not set"
            )
        body.event_key = _key(config["key"])
        date = config.get("effective_date")
        if date is not None:
            try:
                body.effective_date = effective_date(date)
            except ValueError as exc:
                raise StepFailedError(f"effective_date: {exc}") from None
        if config.get("timeout") is not None:
            body.timeout = parse_duration(config["timeout"])
        result = await body.run(ctx)
        if body.timed_out:
            record_result(ctx, {"event": body.event_name, "key": body.event_key, "timed_out": True})
            if ctx.step.children:
                return ExecutionResult.branch([TIMEOUT_OUTCOME], dict(_TIMED_OUT))
            return _timed_out(output_name)
        if not result.proceed:
            return result  # waiting
        record_result(ctx, {"event": body.event_name, "key": body.event_key, "timed_out": False})
        return ExecutionResult.next(output=value_output(output_name, body.event_data))


def _timed_out(output_name: Any) -> ExecutionResult:
    output = {str(output_name): None} if output_name is not None else None
    return ExecutionResult.outcome(TIMEOUT_OUTCOME, output=output)


def _key(value: Any) -> str:
    # Keys are stored as text; 42 and "42" name the same event (as with publish_event).
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _has_references(text: str) -> bool:
    try:
        return bool(ip.references(text))
    except ip.InterpolationError:
        return True  # the loader reports a malformed reference itself


def effective_date(value: Any) -> dt.datetime:
    """``value`` (an ISO 8601 date-time; a date alone is its midnight) as an aware UTC
    datetime; one without a timezone is taken as UTC. ``ValueError`` otherwise."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date-time (ISO 8601, e.g. 2030-01-01T09:00:00Z)"
            ) from None
    else:
        raise ValueError(f"{value!r} is not a date-time (ISO 8601, e.g. 2030-01-01T09:00:00Z)")
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
