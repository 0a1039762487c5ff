"""Run the real worker in-process for workflow tests, optionally with same-named gate activities.

A gate activity wraps the real implementation: it announces that the step started, waits until the
test releases it, then runs the real code. That lets a test act (signal, cancel) at an exact step
without sleeping and without replacing what the step does.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import re
import typing
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client

from alga_worker.activities.heartbeat import heartbeating
from alga_worker.config import Settings
from alga_worker.runtime.worker import WorkerResources, build_resources, build_worker


def activity_name(fn: Callable[..., Any]) -> str:
    definition = activity._Definition.must_from_callable(fn)
    assert definition.name is not None
    return definition.name


Activities = dict[str, Callable[..., Any]]


@contextlib.asynccontextmanager
async def activities_for(settings: Settings) -> AsyncIterator[Activities]:
    """The worker's real activities for ``settings`` by their registered names (pool and clients
    closed afterwards), for tests that run one in an ``ActivityEnvironment``."""
    resources: WorkerResources = await build_resources(settings)
    try:
        yield {activity_name(fn): fn for fn in resources.activities}
    finally:
        await resources.aclose()


@dataclass
class Gate:
    """One step's gate: ``entered`` is set when the step starts; the step waits for ``release``.

    ``after=False`` (default): the step waits *before* its real work, heartbeating as a live activity
    does, so a cancel of the activity reaches it while it waits. ``after=True``: the real work runs
    first (the email is accepted), then the step waits before reporting its result, like a worker
    that has not yet told Temporal: it does not heartbeat, so a cancel cannot reach it.
    """

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0
    after: bool = False


def gated(name: str, real: Callable[..., Any], gate: Gate) -> Callable[..., Any]:
    async def wrapper(arg: Any) -> Any:
        gate.calls += 1
        if gate.after:
            result = await real(arg)
            gate.entered.set()
            await gate.release.wait()
            return result
        gate.entered.set()
        async with heartbeating(interval=0.2):
            await gate.release.wait()
        return await real(arg)

    # The pydantic converter needs the real parameter and return types (resolved, not strings), and
    # the SDK reads them when the activity is defined: annotate first, then decorate.
    hints = typing.get_type_hints(real)
    arg_type = next(v for k, v in hints.items() if k != "return")
    wrapper.__annotations__ = {"arg": arg_type, "return": hints["return"]}
    return activity.defn(name=name)(wrapper)


@contextlib.asynccontextmanager
async def running_worker(client: Client, settings: Settings,
                         gates: dict[str, Gate] | None = None) -> AsyncIterator[WorkerResources]:
    resources = await build_resources(settings)
    activities = {activity_name(fn): fn for fn in resources.activities}
    for name, gate in (gates or {}).items():
        activities[name] = gated(name, activities[name], gate)
    worker = build_worker(client, settings, list(activities.values()))
    try:
        async with worker:
            yield resources
    finally:
        await resources.aclose()


def outbox_messages(outbox: Path) -> list[email.message.EmailMessage]:
    if not outbox.exists():
        return []
    messages = []
    for path in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        messages.append(msg)
    return messages


def text_body(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def password_from_welcome(msg: email.message.EmailMessage) -> str:
    """The temporary password as printed in the welcome email's text part."""
    match = re.search(r"Temporary password:\s*(\S+)", text_body(msg), re.IGNORECASE)
    assert match, "welcome email has no 'Temporary password:' line"
    return match.group(1)
