"""Fault injection for the fault suite only (`make chaos`): off unless `SALIENCY_FAULTS` names
faults, which no deployment sets. Each entry is `name:argument`:

- `kill_on_input:<text>` — the worker process exits at once (as if killed, exit 137) when it
  reads an input whose name contains `<text>`: a poison input that kills every worker that
  tries it.
"""

from __future__ import annotations

import logging
import os

from shared.records import InputSource
from shared.settings import Settings

log = logging.getLogger(__name__)


def before_input(settings: Settings, source: InputSource) -> None:
    """Apply the faults that fire when an input is read."""
    for fault in settings.faults:
        name, _, argument = fault.partition(":")
        if name == "kill_on_input" and argument and argument in source.name:
            log.error("fault injection: killing this worker on input %s", source.name)
            os._exit(137)
