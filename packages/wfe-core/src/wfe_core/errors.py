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


class LockError(WfeError):
    """Base class of lock failures."""


class LockNotHeldError(LockError):
    """The lease being renewed or released is not (or no longer) the current holder's."""


class ProviderError(WfeError):
    """A provider's backend failed (connection lost, server error, ...).

    The original driver exception is chained as ``__cause__``.
    """


class WorkflowTimeoutError(WfeError, TimeoutError):
    """Waiting for a workflow to finish took longer than the given timeout."""
