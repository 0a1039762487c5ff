"""The codec server (``alga-worker codec-server``) against real histories, a real Temporal CLI and real TLS.

What is proven here:

- what an encrypting worker wrote (a real provisioning on the dev server) comes back as the plain JSON
  input from ``POST /decode`` of the real command, and ``/encode`` then ``/decode`` round-trips;
- ``temporal workflow show --codec-endpoint ... --codec-auth "Bearer ..."`` shows the decoded input
  (the tenant name), and without the codec endpoint it does not;
- no credentials or a wrong token: 401 with an empty body, whatever was asked;
- mTLS: a client without a certificate is refused in the TLS handshake, one with a certificate signed
  by the configured CA is served (certificates made here with ``cryptography``);
- CORS: a preflight from the configured Web UI origin gets the ``Access-Control-*`` headers, one from
  any other origin none;
- malformed JSON is 400, an oversized body 413, a payload under an unknown key 400 naming the key id;
- neither the payloads nor the token appear in the server's log;
- without any authentication configured the command refuses to start (exit 2).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import http.client
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from tests.support.data import tenant_request
from tests.support.history import payloads_of
from tests.support.workers import running_worker

from alga_worker.config import load_codec_server_settings, load_settings
from alga_worker.models import TenantCreationResult
from alga_worker.payload_codec import EncryptionCodec, PayloadKeys, build_codec, data_converter, generate_key
from alga_worker.runtime.codec_server import CodecServer, CodecServerOptions
from alga_worker.runtime.devstack import DevStack, find_binary, free_port

ALGA_WORKER = str(Path(sys.executable).parent / "alga-worker")
TOKEN = "codec-token-" + "x7Q2" * 10
UI_ORIGIN = "https://temporal-ui.example"
KEY_ID = "k2026-01"


@pytest.fixture(scope="module")
def key_b64() -> str:
    return generate_key()


@pytest.fixture
def key_env(key_b64: str) -> dict[str, str]:
    return {"PAYLOAD_KEYS": f"old-key:{generate_key()},{KEY_ID}:{key_b64}", "PAYLOAD_ACTIVE_KEY_ID": KEY_ID}


@pytest.fixture
def codec_env(key_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The codec server's environment: keys, token, the UI origin; nothing of the worker's."""
    secrets = tmp_path / "codec-secrets"
    secrets.mkdir()
    return {**key_env, "SECRETS_DIR": str(secrets), "CODEC_SERVER_TOKEN": TOKEN,
            "CODEC_SERVER_CORS_ORIGINS": f"{UI_ORIGIN}, http://localhost:8233", "LOG_FORMAT": "json",
            "LOG_LEVEL": "info"}


# ---------------------------------------------------------------- the real command, as a process


@dataclass
class CodecProcess:
    proc: subprocess.Popen[bytes]
    port: int
    health_port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def _get(port: int, path: str) -> int:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return 0


@contextlib.contextmanager
def codec_process(env: dict[str, str], log_path: Path) -> Iterator[CodecProcess]:
    port, health_port = free_port(), free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEC_SERVER_", "PAYLOAD_"))}
    full_env.update(env)
    with log_path.open("ab") as log:
        proc = subprocess.Popen([ALGA_WORKER, "codec-server", "--host", "127.0.0.1", "--port", str(port),
                                 "--health-port", str(health_port)],
                                env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = CodecProcess(proc, port, health_port, log_path)
    try:
        for _ in range(300):  # bounded poll of the probe, as Kubernetes would
            if _get(health_port, "/healthz") == 200:
                break
            assert proc.poll() is None, f"codec server exited {proc.returncode}:\n{server.output()}"
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
        else:
            raise AssertionError(f"codec server never became healthy:\n{server.output()}")
        yield server
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=15) == 0, server.output()
        finally:
            if proc.poll() is None:
                proc.kill()


# ---------------------------------------------------------------- HTTP helpers


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            *, context: ssl.SSLContext | None = None) -> Reply:
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def payloads_body(payloads: list[Payload]) -> bytes:
    return json.dumps({"payloads": [json_format.MessageToDict(p) for p in payloads]}).encode()


def payloads_from(reply: Reply) -> list[Payload]:
    assert reply.status == 200, (reply.status, reply.body[:300])
    return [json_format.ParseDict(doc, Payload()) for doc in reply.json()["payloads"]]


def auth(token: str = TOKEN, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Namespace": "default",
            **extra}


def plain(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


# ---------------------------------------------------------------- a provisioning on an encrypting worker


async def provision_encrypted(stack: DevStack, worker_env: dict[str, str], key_env: dict[str, str],
                              ) -> tuple[Client, str, dict[str, Any]]:
    """Run tenantCreationWorkflow on a worker and client that encrypt; the plain client, the workflow
    id and the input."""
    settings = load_settings({**worker_env, **key_env})
    assert build_codec(settings) is not None
    encrypting = await Client.connect(stack.temporal_address, data_converter=data_converter(settings))
    request_doc = tenant_request(tenantName=f"Codec Server Tenant {uuid.uuid4().hex[:8]}")
    workflow_id = f"tenant-creation-{uuid.uuid4()}"
    async with running_worker(encrypting, settings):
        handle = await encrypting.start_workflow("tenantCreationWorkflow", request_doc, id=workflow_id,
                                                 task_queue=settings.task_queue, result_type=TenantCreationResult)
        result = await handle.result()
    assert result.success
    return encrypting, workflow_id, request_doc


async def test_decodes_what_an_encrypting_worker_wrote(stack: DevStack, client: Client, worker_env: dict[str, str],
                                                       key_env: dict[str, str], codec_env: dict[str, str],
                                                       tmp_path: Path) -> None:
    _, workflow_id, request_doc = await provision_encrypted(stack, worker_env, key_env)
    history = await client.get_workflow_handle(workflow_id).fetch_history()  # the plain client: raw payloads
    raw = [p for event in history.events for p in payloads_of(event)]
    encrypted = [p for p in raw if p.metadata.get("encoding") == b"binary/encrypted"]
    assert encrypted, "the worker wrote no encrypted payloads"
    assert request_doc["tenantName"].encode() not in b"".join(p.SerializeToString() for p in raw)

    with codec_process(codec_env, tmp_path / "codec.log") as server:
        decoded = payloads_from(await asyncio.to_thread(request, server.port, "POST", "/decode",
                                                        payloads_body(raw), auth()))
        assert len(decoded) == len(raw)
        assert all(p.metadata.get("encoding") != b"binary/encrypted" for p in decoded)
        started = history.events[0].workflow_execution_started_event_attributes.input.payloads
        [start_input] = payloads_from(await asyncio.to_thread(request, server.port, "POST", "/decode",
                                                              payloads_body(list(started)), auth()))
        assert start_input.metadata["encoding"] == b"json/plain"
        assert json.loads(start_input.data) == request_doc
        # Plain payloads (search attributes, runs started before encryption) pass through unchanged.
        assert all(d == r for d, r in zip(decoded, raw, strict=True)
                   if r.metadata.get("encoding") != b"binary/encrypted")

        # /encode then /decode: the active key, then back to the very same payloads.
        originals = [plain({"tenantName": "Round Trip GmbH", "n": i}) for i in range(3)] + [Payload()]
        encoded = payloads_from(await asyncio.to_thread(request, server.port, "POST", "/encode",
                                                        payloads_body(originals), auth()))
        assert all(p.metadata["encoding"] == b"binary/encrypted" for p in encoded)
        assert {p.metadata["encryption-key-id"] for p in encoded} == {KEY_ID.encode()}
        assert b"Round Trip" not in b"".join(p.data for p in encoded)
        again = payloads_from(await asyncio.to_thread(request, server.port, "POST", "/decode",
                                                      payloads_body(encoded), auth()))
        assert again == originals
        # The worker's own codec reads what the server encoded (same format, same keys).
        keys = PayloadKeys.parse(key_env["PAYLOAD_KEYS"], KEY_ID)
        assert await EncryptionCodec(keys).decode(encoded) == originals
    log = server.output()
    assert "codec server request" in log
    for secret in (TOKEN, request_doc["tenantName"], request_doc["adminUser"]["email"], "Round Trip",
                   key_env["PAYLOAD_KEYS"].split(",")[1].split(":")[1]):
        assert secret not in log


async def test_temporal_cli_shows_decoded_input_only_with_the_codec_endpoint(
        stack: DevStack, worker_env: dict[str, str], key_env: dict[str, str], codec_env: dict[str, str],
        tmp_path: Path) -> None:
    _, workflow_id, request_doc = await provision_encrypted(stack, worker_env, key_env)
    temporal = find_binary("temporal")
    base = [temporal, "workflow", "show", "--workflow-id", workflow_id, "--address", stack.temporal_address,
            "--namespace", "default", "--output", "json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    with codec_process(codec_env, tmp_path / "codec.log") as server:
        decoded = await asyncio.to_thread(
            subprocess.run, [*base, "--codec-endpoint", server.endpoint, "--codec-auth", f"Bearer {TOKEN}"],
            capture_output=True, text=True, timeout=60, env=env, check=False)
        refused = await asyncio.to_thread(
            subprocess.run, [*base, "--codec-endpoint", server.endpoint, "--codec-auth", "Bearer wrong-token"],
            capture_output=True, text=True, timeout=60, env=env, check=False)
    raw = await asyncio.to_thread(subprocess.run, base, capture_output=True, text=True, timeout=60, env=env,
                                  check=False)
    assert decoded.returncode == 0, decoded.stderr
    assert raw.returncode == 0, raw.stderr
    # `workflow show --output json` prints payloads as protobuf JSON (base64 data, for replay): read the
    # start event's input as the CLI shows it.
    shown = cli_start_input(decoded.stdout)
    assert shown.metadata["encoding"] == b"json/plain"
    assert json.loads(shown.data) == request_doc
    assert request_doc["tenantName"] in all_shown_text(decoded.stdout)
    assert cli_start_input(raw.stdout).metadata["encoding"] == b"binary/encrypted"
    assert request_doc["tenantName"] not in all_shown_text(raw.stdout)
    # A wrong token: the server refuses, and the CLI shows nothing decoded.
    assert refused.returncode != 0 or request_doc["tenantName"] not in all_shown_text(refused.stdout)
    assert '"status": 401' in server.output()


def cli_start_input(stdout: str) -> Payload:
    events = json.loads(stdout)["events"]
    [payload] = events[0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"]
    return json_format.ParseDict(payload, Payload())


def all_shown_text(stdout: str) -> str:
    """The CLI's output with every base64 string decoded next to it (names hide in base64 otherwise)."""
    parts = [stdout]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            with contextlib.suppress(ValueError):
                parts.append(base64.b64decode(node, validate=True).decode("utf-8", "replace"))

    walk(json.loads(stdout))
    return "\n".join(parts)


# ---------------------------------------------------------------- authentication, CORS, limits (in process)


@contextlib.contextmanager
def in_process(env: dict[str, str], **overrides: Any) -> Iterator[CodecServer]:
    """The server as the command builds it (settings -> codec -> options), on a free port."""
    settings = load_codec_server_settings(env)
    codec = build_codec(settings)
    assert codec is not None
    options = CodecServerOptions(
        token=settings.token.get_secret_value() if settings.token else None, cors_origins=settings.cors_origins,
        tls_cert=settings.tls_cert, tls_key=settings.tls_key, tls_client_ca=settings.tls_client_ca,
        max_body_bytes=settings.max_body_bytes)
    options = dataclasses.replace(options, **overrides)
    server = CodecServer(codec, options, "127.0.0.1", 0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_requests_without_valid_credentials_are_401_with_no_details(codec_env: dict[str, str]) -> None:
    encrypted_elsewhere = [plain({"tenantName": "Secret Corp"})]
    with in_process(codec_env) as server:
        body = payloads_body(encrypted_elsewhere)
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
                        {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN},
                        {"Authorization": f"Bearer {TOKEN}x"}):
            for path in ("/decode", "/encode", "/nowhere"):
                reply = request(server.port, "POST", path, body, {"Content-Type": "application/json", **headers})
                assert (reply.status, reply.body) == (401, b""), (headers, path)
                assert reply.headers["www-authenticate"].startswith("Bearer")
        assert request(server.port, "POST", "/decode", body, auth()).status == 200
        assert request(server.port, "POST", "/decode", body, {"authorization": f"bearer {TOKEN}"}).status == 200
        assert request(server.port, "GET", "/healthz").status == 200  # probes need no credentials


def test_bad_requests_are_json_errors(codec_env: dict[str, str]) -> None:
    stranger = EncryptionCodec(PayloadKeys.parse(f"someone-elses:{generate_key()}"))
    foreign = stranger.encode_one(plain({"tenantName": "Not Ours"}))
    with in_process(codec_env, max_body_bytes=64 * 1024) as server:
        for body in (b"{not json", b"[1, 2]", b'{"payloads": 5}', b'{"payloads": [{"data": "%%%"}]}',
                     b'{"payloads": [{"metadata": {"encoding": 5}}]}', b"\xff\xfe"):
            reply = request(server.port, "POST", "/decode", body, auth())
            assert reply.status == 400, body
            assert set(reply.json()) == {"error"}
        reply = request(server.port, "POST", "/decode", payloads_body([foreign]), auth())
        assert reply.status == 400
        assert "someone-elses" in reply.json()["error"] and "UnknownKeyError" in reply.json()["error"]
        big = payloads_body([plain("x" * 70_000)])
        assert request(server.port, "POST", "/encode", big, auth()).status == 413
        assert payloads_from(request(server.port, "POST", "/decode", b'{"payloads": []}', auth())) == []
        assert payloads_from(request(server.port, "POST", "/decode", b"{}", auth())) == []


def test_cors_preflight_only_for_the_configured_origins(codec_env: dict[str, str]) -> None:
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type,x-namespace"}
    with in_process(codec_env) as server:
        allowed = request(server.port, "OPTIONS", "/decode", headers={"Origin": UI_ORIGIN, **preflight})
        assert allowed.status == 204
        assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
        assert allowed.headers["access-control-allow-credentials"] == "true"
        allowed_headers = {h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "x-namespace"} <= allowed_headers
        assert "POST" in allowed.headers["access-control-allow-methods"]
        local = request(server.port, "OPTIONS", "/encode", headers={"Origin": "http://localhost:8233", **preflight})
        assert local.headers["access-control-allow-origin"] == "http://localhost:8233"

        for origin in ("https://evil.example", "https://temporal-ui.example.evil.example", "null"):
            other = request(server.port, "OPTIONS", "/decode", headers={"Origin": origin, **preflight})
            assert not [h for h in other.headers if h.startswith("access-control-")], origin
        # The actual call: the allowed origin is told it may read the answer; another origin is not.
        body = payloads_body([plain(1)])
        ok = request(server.port, "POST", "/decode", body, auth(Origin=UI_ORIGIN))
        assert ok.status == 200 and ok.headers["access-control-allow-origin"] == UI_ORIGIN
        evil = request(server.port, "POST", "/decode", body, auth(Origin="https://evil.example"))
        assert not [h for h in evil.headers if h.startswith("access-control-")]
        # "*" allows any origin, but never with credentials.
    with in_process({**codec_env, "CODEC_SERVER_CORS_ORIGINS": "*"}) as server:
        anyone = request(server.port, "OPTIONS", "/decode", headers={"Origin": "https://any.example", **preflight})
        assert anyone.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in anyone.headers
    with in_process(codec_env) as server:
        # A 401 still tells the UI why (it may read the status), and nothing else.
        denied = request(server.port, "POST", "/decode", body, {"Origin": UI_ORIGIN})
        assert denied.status == 401 and denied.body == b""


# ---------------------------------------------------------------- mTLS


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _issue(tmp: Path, stem: str, cn: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
           *, ca: bool = False, server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = issuer or (_name(cn), key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    else:
        usage = x509.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    (tmp / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(tmp / f"{stem}.key", key)
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca_cert, ca_key = _issue(tmp_path, "ca", "Alga test CA", None, ca=True)
    issuer = (ca_cert.subject, ca_key)
    _issue(tmp_path, "server", "localhost", issuer, server=True)
    _issue(tmp_path, "client", "operator", issuer)
    _issue(tmp_path, "rogue", "operator", None)  # self-signed: same name, wrong CA
    return Pki(tmp_path / "ca.crt", tmp_path / "server.crt", tmp_path / "server.key", tmp_path / "client.crt",
               tmp_path / "client.key", tmp_path / "rogue.crt", tmp_path / "rogue.key")


def _client_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def _refused_in_handshake(port: int, context: ssl.SSLContext) -> bool:
    """True when the server ends the connection in (or right after) the TLS handshake: with TLS 1.3 the
    client's handshake may complete before the server's verdict, which then arrives on the first read."""
    try:
        reply = request(port, "POST", "/decode", payloads_body([plain(1)]), auth(), context=context)
    except (TimeoutError, ssl.SSLError, ConnectionError, http.client.RemoteDisconnected):
        return True
    raise AssertionError(f"served without a valid client certificate: {reply.status}")


@pytest.mark.parametrize("with_token", [False, True], ids=["mtls-only", "mtls-and-token"])
def test_mtls_requires_a_client_certificate_from_the_ca(codec_env: dict[str, str], pki: Pki,
                                                        with_token: bool) -> None:
    env = {**codec_env, "CODEC_SERVER_TLS_CERT": str(pki.server_cert), "CODEC_SERVER_TLS_KEY": str(pki.server_key),
           "CODEC_SERVER_TLS_CLIENT_CA": str(pki.ca)}
    if not with_token:
        env.pop("CODEC_SERVER_TOKEN")
    with in_process(env) as server:
        assert server.scheme == "https"
        assert _refused_in_handshake(server.port, _client_context(pki))
        assert _refused_in_handshake(server.port, _client_context(pki, pki.rogue_cert, pki.rogue_key))
        # Plain HTTP to the TLS port gets no answer either.
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            request(server.port, "POST", "/decode", b"{}", auth())
        with_cert = _client_context(pki, pki.client_cert, pki.client_key)
        body = payloads_body([plain({"tenantName": "mTLS GmbH"})])
        encoded = payloads_from(request(server.port, "POST", "/encode", body, auth(), context=with_cert))
        assert payloads_from(request(server.port, "POST", "/decode", payloads_body(encoded), auth(),
                                     context=with_cert)) == [plain({"tenantName": "mTLS GmbH"})]
        no_token = request(server.port, "POST", "/decode", body, {"Content-Type": "application/json"},
                           context=with_cert)
        assert no_token.status == (401 if with_token else 200)


def test_refuses_to_start_without_authentication(codec_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEC_SERVER_", "PAYLOAD_"))}
    env.update({k: v for k, v in codec_env.items() if k != "CODEC_SERVER_TOKEN"})
    proc = subprocess.run([ALGA_WORKER, "codec-server", "--port", "0"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "CODEC_SERVER_TOKEN" in proc.stderr
    short = {**env, "CODEC_SERVER_TOKEN": "short"}
    proc = subprocess.run([ALGA_WORKER, "codec-server", "--port", "0"], env=short, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2 and "CODEC_SERVER_TOKEN" in proc.stderr and "short" not in proc.stderr
    no_keys = {k: v for k, v in codec_env.items() if not k.startswith("PAYLOAD_")}
    proc = subprocess.run([ALGA_WORKER, "codec-server", "--port", "0"],
                          env={**{k: v for k, v in env.items() if not k.startswith("PAYLOAD_")}, **no_keys},
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "PAYLOAD_KEYS" in proc.stderr
