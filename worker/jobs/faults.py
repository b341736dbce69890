"""Fault injection for the fault suite only (`make chaos`): off unless `SALIENCY_FAULTS` names
faults, which no deployment sets. Each entry is `name:argument`:

- `kill_on_input:<text>` — the worker process exits at once (as if killed, exit 137) when it
  reads an input whose name contains `<text>`: a poison input that kills every worker that
  tries it.
- `kill_at:<point>` — the worker process exits at once (exit 137) when it reaches `<point>`:
  `finished` (a job just became final, before its webhook is sent).
- `slow_start:<seconds>` — a worker's pool process waits that long before it warms up: a
  host slow to start (the watchdog must not take it for a worker that stopped consuming).
"""

from __future__ import annotations

import logging
import os
import time

from shared.results.records import InputSource
from shared.settings import Settings

log = logging.getLogger(__name__)


def before_input(settings: Settings, source: InputSource) -> None:
    """Apply the faults that fire when an input is read."""
    for fault in settings.faults:
        name, _, argument = fault.partition(":")
        if name == "kill_on_input" and argument and argument in source.name:
            log.error("fault injection: killing this worker on input %s", source.name)
            os._exit(137)


def at_start(settings: Settings) -> None:
    """Apply the faults that fire when a worker's pool process starts."""
    for fault in settings.faults:
        name, _, argument = fault.partition(":")
        if name == "slow_start" and argument:
            log.warning("fault injection: starting %s s late", argument)
            time.sleep(float(argument))


def at_point(settings: Settings, point: str) -> None:
    """Apply the faults that fire at a named point of the task bodies."""
    for fault in settings.faults:
        name, _, argument = fault.partition(":")
        if name == "kill_at" and argument == point:
            log.error("fault injection: killing this worker at %s", point)
            os._exit(137)
