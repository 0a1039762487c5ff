"""Payload encryption end to end: real dev server, real PostgreSQL, the real worker.

- a provisioning on a worker and client with keys leaves none of the input's names or addresses in
  the fetched history, in any form (raw bytes, the JSON export, JSON-escaped, base64), and a refused
  run's failure is encoded (message and details encrypted, the error type readable);
- mixed fleets: a run started by a plain client completes on an encrypting worker; a run started
  encrypted fails only its workflow *task* on a worker that lacks the key id (the error names the key)
  and completes once a worker with the key takes over;
- the CLI encrypts what it starts and decodes what it follows; a production worker without keys is
  refused at start (exit 2, naming PAYLOAD_KEYS);
- a committed history encrypted under the retired test key ``old-2026`` replays after a rotation.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer
from tests.support.data import tenant_request
from tests.support.processes import cli, run_cli
from tests.support.record_histories import ENCRYPTED_OUT, OLD_KEY, OLD_KEY_ID
from tests.support.workers import running_worker

from alga_worker.config import Settings, load_settings
from alga_worker.payload_codec import ENCODING, EncryptionCodec, PayloadKeys, converter_with, data_converter
from alga_worker.runtime.devstack import DevStack
from alga_worker.runtime.worker import SANDBOX
from alga_worker.workflows import WORKFLOWS
from alga_worker.workflows.strict_start import StrictStartInterceptor

NEW_KEY_ID = "k2027"
NEW_KEY = base64.b64encode(bytes(range(64, 96))).decode()
OTHER_KEY_ID = "unrelated"
OTHER_KEY = base64.b64encode(bytes(range(150, 182))).decode()


def keyed(worker_env: dict[str, str], keys: str, active: str) -> dict[str, str]:
    return dict(worker_env, PAYLOAD_KEYS=keys, PAYLOAD_ACTIVE_KEY_ID=active)


async def connect(stack: DevStack, settings: Settings) -> Client:
    return await Client.connect(stack.temporal_address, data_converter=data_converter(settings))


def secret_request() -> dict[str, Any]:
    """An input whose every personal value is unique and long enough to be searched for."""
    tag = uuid.uuid4().hex[:10]
    return tenant_request(tenantName=f"Quintessa Widgets {tag} GmbH",
                          clientName=f"Quintessa Client {tag}",
                          adminUser={"firstName": f"Brunhilde{tag}", "lastName": f"Okonkwo-Sæther{tag}",
                                     "email": f"brunhilde.{tag}@quintessa-widgets.example"})


def forms(text: str) -> Iterator[bytes]:
    """``text`` as it could appear: raw UTF-8, JSON-escaped, and base64 at each of the 3 alignments
    (bytes inside a base64 string show as the base64 of ``raw[k:]`` for the k that aligns them with a
    3-byte group; the last group, which depends on what follows, is dropped)."""
    raw = text.encode()
    yield raw
    yield json.dumps(text)[1:-1].encode()
    yield json.dumps(text, ensure_ascii=False)[1:-1].encode()
    for k in range(3):
        yield base64.b64encode(raw[k:])[:-4]


def needles(request: dict[str, Any]) -> list[str]:
    admin = request["adminUser"]
    return [request["tenantName"], request["clientName"], admin["firstName"], admin["lastName"], admin["email"],
            admin["email"].split("@")[0], admin["email"].split("@")[1]]


def assert_nothing_in_clear(history: WorkflowHistory, secrets: list[str]) -> None:
    as_json = history.to_json()
    as_bytes = b"".join(event.SerializeToString() for event in history.events)
    payload_bytes = [p.SerializeToString() for event in history.events for p in _payloads(event)]
    for secret in secrets:
        for form in forms(secret):
            assert form not in as_bytes, f"{secret!r} in the raw history ({form!r})"
            if form.isascii():
                assert form.decode() not in as_json, f"{secret!r} in the history JSON ({form!r})"
            for data in payload_bytes:
                assert form not in data, f"{secret!r} in a payload ({form!r})"
        assert secret.lower() not in as_json.lower()


def _payloads(msg: Any) -> Iterator[Payload]:
    yield from (p for p, _ in _payloads_with_path(msg))


def _payloads_with_path(msg: Any, path: str = "") -> Iterator[tuple[Payload, str]]:
    """Every Payload in a protobuf message with the field path that holds it."""
    for descriptor, value in msg.ListFields():
        if descriptor.message_type is None:
            continue
        here = f"{path}.{descriptor.name}"
        if descriptor.message_type.GetOptions().map_entry:
            items = [(f"{here}[{k}]", v) for k, v in value.items()]
        elif hasattr(value, "ListFields"):
            items = [(here, value)]
        else:  # a repeated field
            items = [(f"{here}[{i}]", v) for i, v in enumerate(value)]
        for item_path, item in items:
            if isinstance(item, Payload):
                yield item, item_path
            elif hasattr(item, "ListFields"):
                yield from _payloads_with_path(item, item_path)


# Payloads that are plain by nature: search attributes (ids, docs/encryption.md) and Core's own marker
# bookkeeping (patch ids, a local activity's sequence number and type; its result is encrypted).
PLAIN_BY_NATURE = re.compile(r"\.search_attributes\.|\.details\[(patch-data|data)\]")


def assert_every_payload_encrypted(history: WorkflowHistory) -> int:
    count = 0
    for event in history.events:
        for payload, path in _payloads_with_path(event):
            if PLAIN_BY_NATURE.search(path):
                continue
            assert payload.metadata.get("encoding") == ENCODING, (EventType.Name(event.event_type), path)
            count += 1
    return count


async def test_an_encrypted_provisioning_leaves_no_personal_data_in_history(stack: DevStack, worker_env, db) -> None:
    settings = load_settings(keyed(worker_env, f"{NEW_KEY_ID}:{NEW_KEY}", NEW_KEY_ID))
    client = await connect(stack, settings)
    request = secret_request()
    async with running_worker(client, settings):
        handle = await client.start_workflow("tenantCreationWorkflow", request,
                                             id=f"enc-{uuid.uuid4().hex[:8]}", task_queue=settings.task_queue)
        result = await handle.result()
        state = await handle.query("getState")
    assert result["adminEmail"] == request["adminUser"]["email"]  # the keyed client reads it back
    assert state["tenantId"] == result["tenantId"]
    cur = await db.execute("SELECT client_name FROM tenants WHERE tenant = %s", (result["tenantId"],))
    assert (await cur.fetchone())["client_name"] == request["tenantName"]  # the worker decrypted its input
    history = await handle.fetch_history()
    assert assert_every_payload_encrypted(history) >= 6  # input, local and two activities in and out, result
    assert_nothing_in_clear(history, needles(request))
    # The search attribute is there, plain, and holds an id.
    described = await handle.describe()
    assert str(described.search_attributes.get("TenantId")) == f"['{result['tenantId']}']"


async def test_a_refused_run_fails_with_encoded_attributes(stack: DevStack, worker_env) -> None:
    settings = load_settings(keyed(worker_env, f"{NEW_KEY_ID}:{NEW_KEY}", NEW_KEY_ID))
    client = await connect(stack, settings)
    address = f"brunhilde.{uuid.uuid4().hex[:10]}@quintessa-widgets.example"
    first, second = secret_request(), secret_request()
    first["adminUser"]["email"] = second["adminUser"]["email"] = address
    async with running_worker(client, settings):
        await (await client.start_workflow("tenantCreationWorkflow", first, id=f"enc-{uuid.uuid4().hex[:8]}",
                                           task_queue=settings.task_queue)).result()
        handle = await client.start_workflow("tenantCreationWorkflow", second, id=f"enc-dup-{uuid.uuid4().hex[:8]}",
                                             task_queue=settings.task_queue)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    cause: BaseException | None = info.value.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    assert isinstance(cause, ApplicationError) and cause.type == "DuplicateError"
    assert "Encoded failure" not in cause.message  # the keyed client decodes the real message
    history = await handle.fetch_history()
    [failed] = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED]
    failure, types = failed.workflow_execution_failed_event_attributes.failure, []
    while True:  # the run's failure and each cause: message and stack trace encrypted, the type readable
        assert failure.message == "Encoded failure" and failure.stack_trace == ""
        assert failure.encoded_attributes.metadata["encoding"] == ENCODING
        types.append(failure.application_failure_info.type)
        if not failure.HasField("cause"):
            break
        failure = failure.cause
    assert "DuplicateError" in types
    assert_every_payload_encrypted(history)
    assert_nothing_in_clear(history, needles(second))


async def test_a_run_started_plain_completes_on_an_encrypting_worker(stack: DevStack, client: Client,
                                                                     worker_env) -> None:
    """Encryption switched on with plain callers (nm-store today): the worker encrypts from its first
    activity on; the plain input stays as the caller wrote it."""
    settings = load_settings(keyed(worker_env, f"{NEW_KEY_ID}:{NEW_KEY}", NEW_KEY_ID))
    keyed_client = await connect(stack, settings)
    codec = client.data_converter.payload_codec  # the conftest client: writes plain, as the dev stack
    assert isinstance(codec, EncryptionCodec) and not codec.encrypt
    request = secret_request()
    async with running_worker(keyed_client, settings):
        handle = await client.start_workflow("tenantCreationWorkflow", request, id=f"plain-{uuid.uuid4().hex[:8]}",
                                             task_queue=settings.task_queue)
        result = await keyed_client.get_workflow_handle(handle.id).result()
    assert result["adminEmail"] == request["adminUser"]["email"]
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == b"json/plain"
    scheduled = [e.activity_task_scheduled_event_attributes for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert scheduled and all(a.input.payloads[0].metadata["encoding"] == ENCODING for a in scheduled)
    [completed] = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED]
    assert completed.workflow_execution_completed_event_attributes.result.payloads[0].metadata["encoding"] == ENCODING


async def _first_task_failure(handle: WorkflowHandle[Any, Any]) -> str:
    """The message of the run's first failed workflow task (polled: bounded, no fixed sleep)."""
    for _ in range(300):
        history = await handle.fetch_history()
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                return str(event.workflow_task_failed_event_attributes.failure.message)
        await asyncio.sleep(0.1)
    raise AssertionError("the workflow task never failed")


@pytest.mark.parametrize("lacking_keys", ["another key", "no keys at all"])
async def test_an_encrypted_run_waits_for_a_worker_with_its_key(stack: DevStack, worker_env, lacking_keys: str) -> None:
    writer = load_settings(keyed(worker_env, f"{NEW_KEY_ID}:{NEW_KEY}", NEW_KEY_ID))
    lacking = load_settings(keyed(worker_env, f"{OTHER_KEY_ID}:{OTHER_KEY}", OTHER_KEY_ID)
                            if lacking_keys == "another key" else worker_env)
    starter = await connect(stack, writer)
    request = secret_request()
    handle = await starter.start_workflow("tenantCreationWorkflow", request, id=f"keyless-{uuid.uuid4().hex[:8]}",
                                          task_queue=writer.task_queue)
    async with running_worker(await connect(stack, lacking), lacking):
        message = await _first_task_failure(handle)
    # Clear: the error type, the key id, what the worker has; no key material, no garbage.
    assert "UnknownKeyError" in message or "key id 'k2027'" in message, message
    assert "'k2027'" in message, message
    assert (OTHER_KEY_ID in message) == (lacking_keys == "another key"), message  # what the worker holds
    assert NEW_KEY not in message and OTHER_KEY not in message
    described = await handle.describe()
    assert described.status is not None and described.status.name == "RUNNING"  # the run itself did not fail
    async with running_worker(await connect(stack, writer), writer):
        result = await handle.result()
    assert result["adminEmail"] == request["adminUser"]["email"]
    history = await handle.fetch_history()
    assert_nothing_in_clear(history, needles(request))


async def test_the_cli_encrypts_what_it_starts_and_decodes_what_it_follows(stack: DevStack, worker_env) -> None:
    env = keyed(worker_env, f"{NEW_KEY_ID}:{NEW_KEY}", NEW_KEY_ID)
    settings = load_settings(env)
    client = await connect(stack, settings)
    tag = uuid.uuid4().hex[:10]
    name, email = f"Cli Quintessa {tag}", f"cli.{tag}@quintessa-widgets.example"
    workflow_id = f"enc-cli-{tag}"
    async with running_worker(client, settings):
        code, out, err = await cli(env, "tenant", "create", "--name", name, "--admin-email", email,
                                   "--admin-first-name", f"Cliona{tag}", "--admin-last-name", f"Commandline{tag}",
                                   "--workflow-id", workflow_id)
    assert code == 0, err + out
    assert email in out  # followed and printed: the CLI decoded the encrypted query answers and result
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encryption-key-id"] == NEW_KEY_ID.encode()
    assert_every_payload_encrypted(history)
    assert_nothing_in_clear(history, [name, email, f"Cliona{tag}", f"Commandline{tag}"])


@pytest.mark.parametrize("command", ["run", "check"])
async def test_a_production_worker_without_keys_is_refused(worker_env, command: str) -> None:
    env = dict(worker_env, NODE_ENV="production")
    done = await asyncio.to_thread(run_cli, env, command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PAYLOAD_KEYS" in done.stderr and "NODE_ENV=production" in done.stderr
    # Explicitly off: it starts (check gets past configuration).
    off = await asyncio.to_thread(run_cli, dict(env, PAYLOAD_ENCRYPTION="off"), "check")
    assert "PAYLOAD_KEYS" not in off.stderr and "configuration valid" in off.stdout, off.stdout + off.stderr


def _encrypted_histories() -> list[str]:
    return sorted(p.stem for p in ENCRYPTED_OUT.glob("*.json"))


def _load(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, (ENCRYPTED_OUT / f"{name}.json").read_text())


def _replayer(keys: str, active: str) -> Replayer:
    converter = converter_with(EncryptionCodec(PayloadKeys.parse(keys, active)))
    return Replayer(workflows=list(WORKFLOWS), data_converter=converter, workflow_runner=SANDBOX,
                    interceptors=[StrictStartInterceptor()])


def test_the_committed_encrypted_histories_are_encrypted_under_the_old_key() -> None:
    assert _encrypted_histories() == ["send_email_refused", "tenant_creation_completed"]
    for name in _encrypted_histories():
        history = _load(name)
        assert assert_every_payload_encrypted(history) >= 2
        for event in history.events:
            for payload, path in _payloads_with_path(event):
                if not PLAIN_BY_NATURE.search(path):
                    assert payload.metadata["encryption-key-id"] == OLD_KEY_ID.encode()


@pytest.mark.parametrize("name", _encrypted_histories())
async def test_a_history_encrypted_under_a_retired_key_replays_after_rotation(name: str) -> None:
    """Rotation: the active key is new, old-2026 is kept for reading: old histories still replay."""
    rotated = _replayer(f"{NEW_KEY_ID}:{NEW_KEY},{OLD_KEY_ID}:{OLD_KEY}", NEW_KEY_ID)
    await rotated.replay_workflow(_load(name))
    # Dropping the old key too early: replay fails, naming the key id.
    dropped = _replayer(f"{NEW_KEY_ID}:{NEW_KEY}", NEW_KEY_ID)
    result = await dropped.replay_workflow(_load(name), raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert OLD_KEY_ID in str(result.replay_failure), result.replay_failure



async def test_an_encrypted_run_completes_on_a_worker_that_reads_but_does_not_write_encrypted(
        stack: DevStack, worker_env) -> None:
    """The reverse of the plain-caller case: a caller that encrypts, a worker with the key but
    PAYLOAD_ENCRYPTION=off (step 1 of switching on): it reads the encrypted input and writes plain."""
    writer = load_settings(keyed(worker_env, f"{NEW_KEY_ID}:{NEW_KEY}", NEW_KEY_ID))
    reader = load_settings(dict(keyed(worker_env, f"{NEW_KEY_ID}:{NEW_KEY}", NEW_KEY_ID), PAYLOAD_ENCRYPTION="off"))
    starter = await connect(stack, writer)
    request = secret_request()
    async with running_worker(await connect(stack, reader), reader):
        handle = await starter.start_workflow("tenantCreationWorkflow", request,
                                              id=f"reverse-{uuid.uuid4().hex[:8]}", task_queue=reader.task_queue)
        result = await handle.result()
    assert result["adminEmail"] == request["adminUser"]["email"]
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == ENCODING  # the caller's input: encrypted
    completed = history.events[-1].workflow_execution_completed_event_attributes
    assert completed.result.payloads[0].metadata["encoding"] == b"json/plain"  # the worker's result: plain


async def test_a_memo_is_encrypted_like_every_other_payload(stack: DevStack, worker_env) -> None:
    """Memos are payloads too: a caller's memo is stored encrypted and read back decoded."""
    settings = load_settings(keyed(worker_env, f"{NEW_KEY_ID}:{NEW_KEY}", NEW_KEY_ID))
    client = await connect(stack, settings)
    request = secret_request()
    note = f"customer {request['adminUser']['email']}"
    handle = await client.start_workflow("tenantCreationWorkflow", request, id=f"memo-{uuid.uuid4().hex[:8]}",
                                         task_queue=f"nobody-polls-{uuid.uuid4().hex[:8]}", memo={"note": note})
    try:
        history = await handle.fetch_history()
        stored = history.events[0].workflow_execution_started_event_attributes.memo.fields["note"]
        assert stored.metadata["encoding"] == ENCODING
        assert_nothing_in_clear(history, needles(request))
        assert await (await handle.describe()).memo_value("note") == note  # decoded for the keyed client
    finally:
        await handle.terminate("test over")
