"""The payload codec: AES-256-GCM per payload, key ids, rotation, compression, and its settings.

What "every payload type" means here is computed, not listed: the type hints of every registered
activity (input and result), every workflow's result and query answers, the model each workflow decodes
its start input with, and the signal models. Values come from the committed replay histories (real
payloads of real runs, decoded with the model they were written for); the few types no committed
history holds get a hand-built sample, and a test fails when a type has neither.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib
import inspect
import json
import pkgutil
import re
import typing
import uuid
import zlib
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowHistory
from temporalio.converter import DefaultFailureConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.exceptions import ApplicationError

import alga_worker.activities
from alga_worker import models
from alga_worker.config import ConfigError, load_client_settings, load_settings
from alga_worker.converter import DATA_CONVERTER
from alga_worker.payload_codec import (
    ENCODING,
    EncryptionCodec,
    PayloadDecryptionError,
    PayloadKeyError,
    PayloadKeys,
    UnknownKeyError,
    build_codec,
    converter_with,
    data_converter,
    generate_key,
    require_encryption_policy,
)
from alga_worker.workflows import WORKFLOWS

HISTORIES = Path(__file__).resolve().parents[1] / "integration" / "histories"
K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(100, 132))).decode()
K3 = base64.b64encode(bytes(range(200, 232))).decode()
KEY_TEXTS = (K1, K2, K3)


def keys(spec: str, active: str | None = None) -> PayloadKeys:
    return PayloadKeys.parse(spec, active)


def codec(spec: str = f"k1:{K1}", active: str | None = None, **kwargs: Any) -> EncryptionCodec:
    return EncryptionCodec(keys(spec, active), **kwargs)


# ---------------------------------------------------------------- which types, which samples


def _models_in(hint: Any) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        found.add(hint)
    for arg in typing.get_args(hint):
        found |= _models_in(arg)
    return found


def _activity_hints() -> dict[str, dict[str, Any]]:
    """Activity name -> resolved type hints, for every ``@activity.defn`` in alga_worker.activities."""
    hints: dict[str, dict[str, Any]] = {}
    for info in pkgutil.iter_modules(alga_worker.activities.__path__):
        module = importlib.import_module(f"alga_worker.activities.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for _, fn in inspect.getmembers(cls, inspect.isfunction):
                definition = activity._Definition.from_callable(fn)
                if definition is not None and definition.name:
                    hints[definition.name] = typing.get_type_hints(fn)
    return hints


ACTIVITIES = _activity_hints()
WORKFLOW_DEFS = {d.name: d for d in (workflow._Definition.must_from_class(cls) for cls in WORKFLOWS)}
# Workflows take their input as a RawValue and decode it with a wire model (workflows/wire.py).
START_MODELS: dict[str, type[BaseModel] | None] = {}
SIGNAL_MODELS: set[type[BaseModel]] = set()
for _name, _definition in WORKFLOW_DEFS.items():
    _source = inspect.getsource(_definition.cls)
    _found = re.findall(r"decode_(?:start|input)\(\w+, (\w+),", _source)
    START_MODELS[_name] = getattr(models, _found[0]) if _found else None
    # Signal handlers take Any and validate it themselves with their wire model.
    for _model in re.findall(r"\b(\w+Signal|CancelRequest)\b", _source):
        if isinstance(getattr(models, _model, None), type):
            SIGNAL_MODELS.add(getattr(models, _model))


def _used_types() -> set[type[BaseModel]]:
    used: set[type[BaseModel]] = set(SIGNAL_MODELS)
    for hints in ACTIVITIES.values():
        for hint in hints.values():
            used |= _models_in(hint)
    for name, definition in WORKFLOW_DEFS.items():
        assert definition.run_fn is not None
        used |= _models_in(typing.get_type_hints(definition.run_fn).get("return"))
        for query in definition.queries.values():
            used |= _models_in(typing.get_type_hints(query.fn).get("return"))
        model = START_MODELS[name]
        if model is not None:
            used.add(model)
    return used


def _harvest() -> dict[type, Any]:
    """One decoded value per type from the committed histories' payloads."""
    found: dict[type, Any] = {}
    convert = DATA_CONVERTER.payload_converter

    def keep(values: list[Any]) -> None:
        for value in values:
            found.setdefault(type(value), value)

    for path in sorted(HISTORIES.glob("*.json")):
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        workflow_type, scheduled = "", {}
        for event in history.events:
            if event.HasField("workflow_execution_started_event_attributes"):
                started = event.workflow_execution_started_event_attributes
                workflow_type = started.workflow_type.name
                model = START_MODELS[workflow_type]
                if started.input.payloads and model is not None:
                    keep([models.parse_wire(model, started.input.payloads[0].data)])
            elif event.HasField("activity_task_scheduled_event_attributes"):
                attrs = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = attrs.activity_type.name
                hints = ACTIVITIES[attrs.activity_type.name]
                if attrs.input.payloads:
                    keep(convert.from_payloads(attrs.input.payloads, [v for k, v in hints.items() if k != "return"]))
            elif event.HasField("activity_task_completed_event_attributes"):
                attrs = event.activity_task_completed_event_attributes
                if attrs.result.payloads:
                    hint = ACTIVITIES[scheduled[attrs.scheduled_event_id]]["return"]
                    keep(convert.from_payloads(attrs.result.payloads, [hint]))
            elif event.HasField("workflow_execution_completed_event_attributes"):
                attrs = event.workflow_execution_completed_event_attributes
                run_fn = WORKFLOW_DEFS[workflow_type].run_fn
                assert run_fn is not None
                if attrs.result.payloads:
                    keep(convert.from_payloads(attrs.result.payloads, [typing.get_type_hints(run_fn)["return"]]))
    return found


def _first(enum: type[Enum]) -> Any:
    return next(iter(enum))


TID, UID = uuid.UUID("3f0c1a52-7d35-4b8e-9a4f-0f6b2c1d9e77"), uuid.UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
ADMIN = models.AdminUserInput(first_name="Zoë", last_name="Ó'Brien-Łukasz", email="zoe.obrien@secret-msp.example")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# Types no committed history holds (queries, compensation steps, workflows without a recorded history).
HAND_SAMPLES: dict[type, Any] = {s.__class__: s for s in (
    models.CustomerRecordsInput(tenant_id=TID, tenant_name="Secret MSP Ltd", client_name="Secret MSP Ltd",
                                admin=ADMIN, customer_client_id=uuid.uuid4(), contact_id=uuid.uuid4()),
    models.UpdateLicenseCountRequest(tenant_id=TID, license_count=25, event_id="evt_1PqRsT"),
    models.LicenseCountResult(tenant_id=TID, license_count=25, previous_license_count=10, changed=True,
                              event_id="evt_1PqRsT"),
    models.LicenseUsageInput(tenant_id=TID),
    models.LicenseUsage(tenant_id=TID, limit=25, used=3, remaining=22),
    models.PortalAccessEmailInput(tenant_id=TID, portal_user_id=UID, tenant_name="Secret MSP Ltd", admin=ADMIN,
                                  sealed_portal_password="v1.c2VhbGVk", seal_binding="run-binding"),
    models.RemoveTenantInput(tenant_id=TID, client_id=UID),
    models.RemoveTenantOutput(rows_deleted={"tenants": 1, "users": 2}, not_owned=False),
    models.RemoveUserInput(tenant_id=TID, user_id=UID),
    models.RemoveUserOutput(removed=True),
    models.SubscriptionCancellationInput(tenant_id=TID, deletion_id=UID, stripe_subscription_id="sub_1Abc"),
    models.SubscriptionCancellationResult(outcome=models.StepOutcome(status=_first(models.OutcomeStatus),
                                                                     detail="set"), changed=True, cancel_at=NOW),
    models.TenantCreationState(step=_first(models.Step), progress=40, tenant_id=str(TID), error=None,
                               outcomes={"provision": models.StepOutcome(rows={"users": 1})}),
    models.TenantDeletionState(step=_first(models.TenantDeletionStep), status=_first(models.TenantDeletionStatus),
                               deletion_id=UID, tenant_id=TID, tenant_name="Secret MSP Ltd", confirmed_at=NOW,
                               waiting_for=["confirmation"], deleted_tables=["users"]),
    models.TenantExportState(step=_first(models.TenantExportStep), status=_first(models.TenantExportStatus),
                             export_id=UID, tenant_id=TID, tenant_name="Secret MSP Ltd", started_at=NOW),
    models.WorkerCapabilities(missing_checkout_settings=["NMSTORE_BASE_URL"], stripe_enabled=True,
                              search_attributes=["TenantId"]),
    models.CancelRequest(reason="customer asked", cancelled_by="ops@nineminds.example"),
    models.ConfirmDeletionSignal(confirmed_by="ops@nineminds.example"),
    models.RollbackDeletionSignal(reason="mistake", rolled_back_by="ops@nineminds.example"),
)}

USED = _used_types()
HARVESTED = _harvest()
SAMPLES: dict[type, Any] = {t: HARVESTED.get(t, HAND_SAMPLES.get(t)) for t in USED}
# Non-model payloads some activities take or return.
OTHER_SAMPLES: list[tuple[str, Any, Any]] = [("str", str, "run-binding-secret"), ("int", int, 3),
                                             ("dict", dict[str, int], {"users": 4}), ("None", type(None), None)]


def test_the_enumeration_finds_every_registered_workflow_and_activity() -> None:
    assert set(WORKFLOW_DEFS) == {workflow._Definition.must_from_class(c).name for c in WORKFLOWS}
    assert len(ACTIVITIES) >= 38  # every activity class of alga_worker.activities, not a hand-picked few
    assert all(START_MODELS[name] is not None for name in WORKFLOW_DEFS if name != "healthCheckWorkflow")
    assert {models.CancelRequest, models.ConfirmDeletionSignal, models.RollbackDeletionSignal} <= SIGNAL_MODELS
    assert len(USED) >= 70


def test_every_payload_type_has_a_sample_mostly_from_real_histories() -> None:
    missing = sorted(t.__name__ for t, v in SAMPLES.items() if v is None)
    assert missing == [], f"no sample for {missing}: add one to HAND_SAMPLES"
    assert len([t for t in USED if t in HARVESTED]) >= 55
    stale = sorted(t.__name__ for t in HAND_SAMPLES if t not in USED)
    assert stale == [], f"hand samples for types nothing uses: {stale}"


def _plain_texts(value: Any) -> list[bytes]:
    """Strings of a value that must not show in an encrypted payload (at least 6 characters)."""
    dumped = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str) and len(node) >= 6:
            texts.append(node)

    walk(dumped)
    return [t.encode() for t in texts]


@pytest.mark.parametrize("compress", [True, False], ids=["compression-on", "compression-off"])
@pytest.mark.parametrize("payload_type", sorted(SAMPLES, key=lambda t: t.__name__), ids=lambda t: t.__name__)
async def test_every_payload_type_round_trips_encrypted(payload_type: type, compress: bool) -> None:
    value = SAMPLES[payload_type]
    converter = converter_with(codec(compress=compress))
    [payload] = await converter.encode([value])
    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata["encryption-key-id"] == b"k1"
    assert payload.metadata["encryption-cipher"] == b"AES256-GCM"
    if not compress:
        assert "compression" not in payload.metadata
    for text in _plain_texts(value):
        assert text not in payload.data
    [back] = await converter.decode([payload], [payload_type])
    assert back == value
    # Exactly the plain converter's payload comes out of the codec.
    [plain] = DATA_CONVERTER.payload_converter.to_payloads([value])
    [inner] = await converter.payload_codec.decode([payload])  # type: ignore[union-attr]
    assert inner == plain


@pytest.mark.parametrize("name,hint,value", OTHER_SAMPLES, ids=[s[0] for s in OTHER_SAMPLES])
async def test_non_model_payloads_round_trip(name: str, hint: Any, value: Any) -> None:
    converter = converter_with(codec())
    payloads = await converter.encode([value])
    assert all(p.metadata["encoding"] == ENCODING for p in payloads)
    assert await converter.decode(payloads, [hint]) == [value]


async def test_compression_is_used_only_when_it_saves_a_tenth() -> None:
    c = codec()
    big = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"rows": ["Secret MSP"] * 500}).encode())
    [sealed] = await c.encode([big])
    assert sealed.metadata["compression"] == b"zlib"
    assert len(sealed.data) < len(big.data) // 5
    noise = Payload(metadata={"encoding": b"binary/plain"},
                    data=b"".join(hashlib.sha256(bytes([i])).digest() for i in range(16)))  # incompressible
    [sealed_noise] = await c.encode([noise])
    assert "compression" not in sealed_noise.metadata
    assert await c.decode([sealed, sealed_noise]) == [big, noise]


async def test_each_encryption_uses_a_fresh_nonce() -> None:
    c = codec()
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')
    first, second = await c.encode([plain, plain])
    assert first.data[:12] != second.data[:12] and first.data != second.data


async def test_plain_payloads_pass_through_decode_and_encrypted_ones_are_not_encrypted_twice() -> None:
    c = codec()
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"tenantName":"Plain MSP"}')
    assert await c.decode([plain]) == [plain]
    [sealed] = await c.encode([plain])
    assert await c.encode([sealed]) == [sealed]
    # A payload with no metadata at all (binary/null is metadata too: nothing is special-cased).
    bare = Payload()
    assert await c.decode([bare]) == [bare]
    # Through the converter, a plain caller's input decodes as before.
    assert await converter_with(c).decode([plain], [dict]) == [{"tenantName": "Plain MSP"}]


async def test_standalone_codec_encodes_and_decodes_a_batch() -> None:
    """What the bench and the codec server do: the codec on its own, no converter."""
    c = EncryptionCodec(PayloadKeys.parse(f"bench:{generate_key()}"))
    payloads = [Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"i": i}).encode()) for i in range(5)]
    sealed = await c.encode(payloads)
    assert [p.metadata["encryption-key-id"] for p in sealed] == [b"bench"] * 5
    assert await c.decode(sealed) == payloads


async def test_unknown_key_id_names_it_and_the_held_ids_never_key_material() -> None:
    [sealed] = await codec(f"old-2026:{K1}").encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    reader = codec(f"k2:{K2},k3:{K3}", "k3")
    with pytest.raises(UnknownKeyError) as info:
        await reader.decode([sealed])
    message = str(info.value)
    assert "'old-2026'" in message and "k2, k3" in message and "PAYLOAD_KEYS" in message
    assert info.value.key_id == "old-2026"
    for key in KEY_TEXTS:
        assert key not in message


@pytest.mark.parametrize("tamper", ["ciphertext", "nonce", "tag", "truncated", "other-held-key-id",
                                    "compression-flag-removed", "compression-flag-added", "cipher", "empty"])
async def test_tampered_payloads_raise_decryption_errors_never_garbage(tamper: str) -> None:
    writer = codec(f"k1:{K1},k2:{K2}", "k1")
    big = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(["Secret MSP"] * 100).encode())
    small = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    [sealed] = await writer.encode([small if tamper == "compression-flag-added" else big])
    data = bytearray(sealed.data)
    metadata = dict(sealed.metadata)
    if tamper == "ciphertext":
        data[20] ^= 0x01
    elif tamper == "nonce":
        data[0] ^= 0x80
    elif tamper == "tag":
        data[-1] ^= 0x01
    elif tamper == "truncated":
        data = data[:20]
    elif tamper == "other-held-key-id":
        metadata["encryption-key-id"] = b"k2"  # associated data and key both differ
    elif tamper == "compression-flag-removed":
        assert metadata.pop("compression") == b"zlib"
    elif tamper == "compression-flag-added":
        metadata["compression"] = b"zlib"
    elif tamper == "cipher":
        metadata["encryption-cipher"] = b"AES128-CBC"
    elif tamper == "empty":
        data = bytearray()
    forged = Payload(metadata=metadata, data=bytes(data))
    with pytest.raises(PayloadDecryptionError) as info:
        await writer.decode([forged])
    for key in KEY_TEXTS:
        assert key not in str(info.value)


async def test_rotation_keeps_old_payloads_readable_until_the_old_key_is_dropped() -> None:
    before = codec(f"k1:{K1}")
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"adminEmail":"ada@secret-msp.example"}')
    [old] = await before.encode([plain])
    rotated = codec(f"k1:{K1},k2:{K2}", "k2")
    [new] = await rotated.encode([plain])
    assert (old.metadata["encryption-key-id"], new.metadata["encryption-key-id"]) == (b"k1", b"k2")
    assert await rotated.decode([old, new]) == [plain, plain]
    # A worker still on the old configuration cannot read the new key's payloads, and says so.
    with pytest.raises(UnknownKeyError, match="'k2'"):
        await before.decode([new])
    dropped = codec(f"k2:{K2}")
    assert await dropped.decode([new]) == [plain]
    with pytest.raises(UnknownKeyError, match="'k1'"):
        await dropped.decode([old])


async def test_failures_are_encoded_attributes_when_encrypting() -> None:
    converter = converter_with(codec())
    assert issubclass(converter.failure_converter_class, DefaultFailureConverterWithEncodedAttributes)
    error = ApplicationError("admin ada@secret-msp.example is taken", {"email": "ada@secret-msp.example"},
                             type="DuplicateError", non_retryable=True)
    failure = Failure()
    await converter.encode_failure(error, failure)
    wire = failure.SerializeToString()
    assert b"ada@secret-msp.example" not in wire and b"secret-msp" not in wire
    assert failure.message == "Encoded failure"
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    assert failure.application_failure_info.type == "DuplicateError"  # the type stays readable
    back = await converter.decode_failure(failure)
    assert isinstance(back, ApplicationError)
    assert back.message == "admin ada@secret-msp.example is taken"
    assert back.details == ({"email": "ada@secret-msp.example"},)


async def test_a_codec_error_fails_in_clear_naming_the_key_id() -> None:
    """A workflow task failed by a missing key: readable without the codec server (ids only)."""
    converter = converter_with(codec(f"k2:{K2}"))
    failure = Failure()
    await converter.encode_failure(UnknownKeyError("k1", ["k2"]), failure)
    assert failure.message.startswith("payload encrypted with key id 'k1'") and "k2" in failure.message
    assert failure.application_failure_info.type == "UnknownKeyError"
    assert not failure.HasField("encoded_attributes")
    assert K1 not in failure.message and K2 not in failure.message


# ---------------------------------------------------------------- settings


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    return {"SECRETS_DIR": str(secrets), "DB_HOST": "db.internal", "ALGA_AUTH_KEY": "pepper-for-tests-0123456789",
            "NODE_ENV": "development"}


def _problems(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return info.value


@pytest.mark.parametrize("value,active,variable,reason", [
    (f"k1:{K1[:-4]}", None, "PAYLOAD_KEYS", "must be 32 bytes"),
    ("k1:not*base64!", None, "PAYLOAD_KEYS", "not valid base64"),
    (f"k1:{base64.b64encode(b'short').decode()}", None, "PAYLOAD_KEYS", "must be 32 bytes"),
    (f"k1:{K1},k2:{K2}", None, "PAYLOAD_ACTIVE_KEY_ID", "required when PAYLOAD_KEYS holds more than one"),
    (f"k1:{K1},k2:{K2}", "k3", "PAYLOAD_ACTIVE_KEY_ID", "not in PAYLOAD_KEYS"),
    (f"k1:{K1}", "k9", "PAYLOAD_ACTIVE_KEY_ID", "not in PAYLOAD_KEYS"),
    (f"bad id!:{K1}", None, "PAYLOAD_KEYS", "key id must match"),
    (f"k1:{K1},k1:{K2}", "k1", "PAYLOAD_KEYS", "listed twice"),
    (K1, None, "PAYLOAD_KEYS", "is not <keyId>:<base64 key>"),
    (",", None, "PAYLOAD_KEYS", "no keys given"),
], ids=["truncated", "bad-base64", "wrong-length", "two-keys-no-active", "active-unknown", "active-unknown-1",
        "bad-key-id", "duplicate-id", "no-id", "empty-list"])
def test_malformed_keys_name_the_variable_never_the_value(env: dict[str, str], value: str, active: str | None,
                                                          variable: str, reason: str) -> None:
    env["PAYLOAD_KEYS"] = value
    if active:
        env["PAYLOAD_ACTIVE_KEY_ID"] = active
    for load in (load_settings, load_client_settings):
        with pytest.raises(ConfigError) as info:
            load(env)
        err = info.value
        assert err.variables == [variable], str(err)
        assert reason in str(err)
        for secret in (K1, K2, K1[:-4], "not*base64!"):
            assert secret not in str(err)


def test_encryption_mode_is_validated_and_on_requires_keys(env: dict[str, str]) -> None:
    assert _problems({**env, "PAYLOAD_ENCRYPTION": "maybe"}).variables == ["PAYLOAD_ENCRYPTION"]
    with pytest.raises(ConfigError) as info:
        load_client_settings({**env, "PAYLOAD_ENCRYPTION": "maybe"})
    assert info.value.variables == ["PAYLOAD_ENCRYPTION"]
    # on: keys are required in every environment, so it is refused as soon as settings load.
    refused = _problems({**env, "PAYLOAD_ENCRYPTION": "ON"})
    assert refused.variables == ["PAYLOAD_KEYS"] and "PAYLOAD_ENCRYPTION=on" in str(refused)
    on = load_settings({**env, "PAYLOAD_ENCRYPTION": "ON", "PAYLOAD_KEYS": f"k1:{K1}"})
    assert on.payload_encryption == "on"
    require_encryption_policy(on)
    assert _problems({**env, "PAYLOAD_ACTIVE_KEY_ID": "k1"}).variables == ["PAYLOAD_ACTIVE_KEY_ID"]


def test_production_without_keys_is_refused_unless_encryption_is_explicitly_off(env: dict[str, str]) -> None:
    production = load_settings({**env, "NODE_ENV": "production"})
    with pytest.raises(ConfigError) as info:
        require_encryption_policy(production)
    assert info.value.variables == ["PAYLOAD_KEYS"]
    assert "NODE_ENV=production" in str(info.value) and "PAYLOAD_ENCRYPTION=off" in str(info.value)
    require_encryption_policy(load_settings({**env, "NODE_ENV": "production", "PAYLOAD_ENCRYPTION": "off"}))
    require_encryption_policy(load_settings({**env, "NODE_ENV": "production", "PAYLOAD_KEYS": f"k1:{K1}"}))
    require_encryption_policy(load_settings(env))  # development: plain is fine
    assert build_codec(load_settings(env)) is None


def test_keys_from_a_vault_file_with_rotation(env: dict[str, str]) -> None:
    Path(env["SECRETS_DIR"], "temporal-worker").write_text(f"export PAYLOAD_KEYS='old-2026:{K1},k2027:{K2}'\n")
    settings = load_settings({**env, "PAYLOAD_ACTIVE_KEY_ID": "k2027"})
    c = build_codec(settings)
    assert c is not None and c.encrypt
    assert c.keys.active_key_id == "k2027" and c.keys.key_ids == ("old-2026", "k2027")
    # Each key is redacted from logs on its own, and none shows in a repr.
    assert {K1, K2} <= set(settings.secret_values())
    for text in (repr(settings), repr(c.keys), repr(load_client_settings({**env, "PAYLOAD_ACTIVE_KEY_ID": "k2027"}))):
        assert K1 not in text and K2 not in text


async def test_data_converter_follows_the_settings(env: dict[str, str]) -> None:
    plain = data_converter(load_settings(env))
    # No keys: payloads written plain, but an encrypted one is recognised (see below), not misread.
    assert isinstance(plain.payload_codec, EncryptionCodec) and plain.payload_codec.keys is None
    assert not plain.payload_codec.encrypt and plain.failure_converter_class is DefaultFailureConverter
    [unsealed] = await plain.encode([{"tenantName": "Plain"}])
    assert unsealed.metadata["encoding"] == b"json/plain"
    keyed = data_converter(load_settings({**env, "PAYLOAD_KEYS": f"k1:{K1}"}))
    assert isinstance(keyed.payload_codec, EncryptionCodec)
    assert issubclass(keyed.failure_converter_class, DefaultFailureConverterWithEncodedAttributes)
    assert keyed.payload_converter_class is DATA_CONVERTER.payload_converter_class  # strict pydantic kept
    client = data_converter(load_client_settings({**env, "PAYLOAD_KEYS": f"k1:{K1}"}))
    [sealed] = await client.encode([{"tenantName": "Secret MSP"}])
    assert await keyed.decode([sealed], [dict]) == [{"tenantName": "Secret MSP"}]
    # A worker without keys fails the workflow task naming the key id (Temporal retries the task, so a
    # worker with the key can finish the run); it never hands the ciphertext to the payload converter.
    with pytest.raises(UnknownKeyError, match="'k1'"):
        await plain.decode([sealed], [dict])
    # off with keys: written plain, earlier encrypted payloads still read.
    off = data_converter(load_settings({**env, "PAYLOAD_KEYS": f"k1:{K1}", "PAYLOAD_ENCRYPTION": "off"}))
    assert off.failure_converter_class is DefaultFailureConverter
    [written] = await off.encode([{"tenantName": "Plain"}])
    assert written.metadata["encoding"] == b"json/plain"
    assert await off.decode([sealed], [dict]) == [{"tenantName": "Secret MSP"}]


def test_payload_keys_reject_bad_construction_directly() -> None:
    with pytest.raises(PayloadKeyError) as info:
        PayloadKeys(keys={"k1": b"x" * 31}, active_key_id="k1")
    assert info.value.variable == "PAYLOAD_KEYS"
    with pytest.raises(PayloadKeyError) as info:
        PayloadKeys(keys={"k1": b"x" * 32}, active_key_id="k2")
    assert info.value.variable == "PAYLOAD_ACTIVE_KEY_ID"
    assert len(base64.b64decode(generate_key())) == 32
    assert dataclasses.fields(PayloadKeys)[0].repr is False
    assert zlib.decompress(zlib.compress(b"x")) == b"x"
