"""OpenSearch index of workflow instances for WFE."""

from __future__ import annotations
