"""The exception tree every WFE package raises from.

Providers wrap their driver's exceptions in these, so users never see a driver exception.
"""

from __future__ import annotations


class WfeError(Exception):
    """Base class of every error WFE raises on purpose."""


class ConfigurationError(WfeError):
    """Settings are invalid; the message names the field path and the problem."""


class ProviderNotFoundError(ConfigurationError):
    """No installed plugin provides the requested provider name or URL scheme."""


class PluginError(WfeError):
    """A plugin failed to load or registered something invalid."""


class ProviderContractError(PluginError):
    """A provider class or its plugin spec does not keep the provider contract: an unknown
    capability name, or a spec whose capabilities differ from its class's.

    The message names the class (and, raised by the host's registry, the plugin)."""


class AbstractProviderError(ProviderContractError, TypeError):
    """A provider (or step executor) class leaves abstract methods of its contract
    unimplemented, so it cannot be created. A :class:`TypeError` too, as Python raises for
    any abstract class; the message names the class and each missing method."""


class DefinitionError(WfeError):
    """A workflow definition is malformed (raised at build or load time)."""


class InvalidInputError(WfeError):
    """The data a workflow was started with does not fit the definition's declared inputs.

    Raised by ``start_workflow`` before anything is stored; ``problems`` lists every one.
    """

    def __init__(self, definition_id: str, problems: list[str]) -> None:
        self.definition_id = definition_id
        self.problems = problems
        super().__init__(f"bad inputs for workflow {definition_id!r}: " + "; ".join(problems))


class DefinitionNotFoundError(WfeError):
    """No registered definition matches the requested id (and version)."""


class WorkflowNotFoundError(WfeError):
    """No stored workflow instance has the requested id."""


class EventNotFoundError(WfeError):
    """No stored event has the requested id."""


class SubscriptionNotFoundError(WfeError):
    """No stored subscription has the requested id."""


class ConcurrencyError(WfeError):
    """A write was refused because the stored revision is newer than the writer's.

    A stale worker that lost its lease gets this instead of overwriting newer state.
    """


class StaleLeaseError(ConcurrencyError):
    """A write carried a fencing token older than the newest the store has accepted for that
    instance: the writer's lease was lost (expired and taken over) and a newer holder wrote.

    Nothing of the write was stored. The writer should stop working on the instance and leave
    it to the current holder.
    """


class LockError(WfeError):
    """Base class of lock failures."""


class LockNotHeldError(LockError):
    """The lease being renewed or released is not (or no longer) the current holder's."""


class ProviderError(WfeError):
    """A provider's backend failed (connection lost, server error, ...).

    The original driver exception is chained as ``__cause__``.
    """


class ProviderUnavailableError(ProviderError):
    """A provider's backend could not be reached (or kept failing with transient errors)
    for longer than the provider retries."""


class LifecycleGapError(ProviderError):
    """A lifecycle subscription lost its connection: events published meanwhile are lost.

    Raised by a subscription of a network publisher (pub/sub) when it notices the gap; the
    subscription has ended. Subscribe again, and re-check anything you were waiting for
    (``wait_for_workflow`` reads persistence again) instead of relying on a missed event.
    """


class WorkflowTimeoutError(WfeError, TimeoutError):
    """Waiting for a workflow to finish took longer than the given timeout."""


class UnsupportedOperationError(WfeError):
    """The configured provider lacks the optional capability an operation needs (the
    message names the provider, the operation and the capability)."""


class ActivityError(WfeError):
    """Base class of the errors of activities (work done by external workers)."""


class ActivityTokenError(ActivityError):
    """An activity token is malformed, unknown, or no longer the current claim: its lease
    lapsed and another worker took the activity, or the activity is already done or timed
    out. The submission was refused and changed nothing."""


class ActivityFailedError(ActivityError):
    """Raised in the workflow by an activity step whose worker reported a failure; the
    step's error behaviour applies. ``error`` is what the worker submitted."""

    def __init__(self, activity: str, error: object) -> None:
        super().__init__(f"activity {activity!r} failed: {error}")
        self.activity = activity
        self.error = error


class ActivityTimeoutError(ActivityError):
    """Raised in the workflow by an activity step that no worker completed within its
    ``timeout``; the step's error behaviour applies."""


class UserActionError(WfeError):
    """A user action was refused: no open user task has that key, or the value is not one
    of its options. Nothing was published."""
