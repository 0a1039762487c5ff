"""Tests that call configure_logging (which replaces the root handlers) put the process back after."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from temporalio import activity, workflow

from alga_worker.runtime.logging import NOISY_LOGGERS, redactor


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """Root handlers and level, the quietened loggers' levels, the SDK's message suffix switches and
    the process-wide redactor's secrets (it only grows) are as before when the block ends."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    on_message = (workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message)
    shared = redactor()
    known = list(shared._secrets)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)
        workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message = on_message
        shared._secrets = known
