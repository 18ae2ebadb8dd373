"""What external workers and people see of the work waiting for them: pending activities
and open user tasks (``WorkflowClient.get_pending_activity`` and
``WorkflowClient.get_open_user_actions``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs


@attrs.frozen
class PendingActivity:
    """An activity claimed by one worker until ``token_expiry``.

    Submit its result with the ``token`` (``submit_activity_success`` /
    ``submit_activity_failure``) or hand it back (``release_activity``). Past
    ``token_expiry`` another worker may take it, and this token is then refused."""

    token: str
    activity_name: str
    parameters: Any
    workflow_id: str
    token_expiry: datetime


@attrs.frozen
class UserActionOption:
    """One answer a user task offers: the ``value`` published, the ``label`` shown."""

    value: Any
    label: str


@attrs.frozen
class OpenUserAction:
    """A user task waiting for an answer (``publish_user_action(key, user, value)``)."""

    key: str
    prompt: str
    assigned_to: str | None
    options: tuple[UserActionOption, ...]
    workflow_id: str
    #: When the task (or its last escalation) started waiting.
    created: datetime
