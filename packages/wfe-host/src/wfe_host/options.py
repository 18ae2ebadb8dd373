"""Options of the host itself (the ``[host]`` table of the settings)."""

from __future__ import annotations

import attrs

from wfe_core.spi import seconds_validator


@attrs.define
class HostOptions:
    """How a :class:`~wfe_host.WorkflowHost` runs its work.

    Every field can be set in settings as ``host.<field>`` (``[host]`` in ``wfe.toml``) or as
    ``WFE_HOST_<FIELD>`` in the environment.
    """

    #: Workflow passes (one instance each) run at the same time by this host, however they
    #: started (from the queue, by ``start_workflow``, by an event's delivery). A pass waiting
    #: for its steps costs a coroutine, not a thread; more at once also share database commits.
    concurrency: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    #: Steps run at the same time within one pass (parallel branches, parallel for_each).
    max_parallel_steps: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    #: Seconds a worker's lease on an instance lasts before another worker may take it over;
    #: renewed while a pass runs. Finite, > 0 and at most 86400 (one day).
    lease_seconds: float = attrs.field(default=30.0, validator=seconds_validator())
    #: Seconds that stopping the host (leaving ``async with``, SIGTERM or SIGINT to ``wfe
    #: worker`` / ``wfe run``) lets the running steps finish, once it stopped taking work;
    #: then the steps still running are cancelled. Either way every lease is released, so
    #: another process takes the work over at once. 0 cancels at once; at most 86400.
    shutdown_grace: float = attrs.field(default=5.0, validator=seconds_validator(allow_zero=True))
    #: Seconds between a host's sweeps for work nobody queued, on a store shared with other
    #: processes: instances due for a while (their host died, or a queue that lost its items,
    #: such as a restarted Valkey without persistence) and stored events still undelivered
    #: this long after their time. Shorter finds left-behind work sooner, at the cost of a
    #: few reads per sweep. Finite, > 0 and at most 86400.
    recovery_seconds: float = attrs.field(default=30.0, validator=seconds_validator())
    #: Run background consumers (execute workflows). A host that only starts workflows and
    #: reads their state sets this to false (or is a :class:`~wfe_host.WorkflowClient`, which
    #: never runs them).
    run_workers: bool = True
    #: Name of this worker in leases and logs; a random one when unset.
    worker_id: str | None = None
    #: Record OpenTelemetry spans and metrics when ``opentelemetry-api`` is installed
    #: (no-ops until an SDK is configured; see docs/observability.md).
    telemetry: bool = True
