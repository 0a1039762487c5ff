"""``alga-worker codec-server``: the Temporal codec server for the Web UI and ``temporal --codec-endpoint``.

It decrypts (``/decode``) and encrypts (``/encode``) payloads with the same ``PAYLOAD_KEYS`` as the
worker, so operators can read histories that reach Temporal encrypted. Configuration: the
``CODEC_SERVER_*`` variables (docs/configuration.md), from the environment or Vault-rendered files.
It refuses to start without authentication (a bearer token and/or client certificates) and exits 2
naming the variable that is missing or malformed, never its value.
"""

from __future__ import annotations

from typing import Annotated

import typer

from alga_worker.cli.common import EXIT_CONFIG, EXIT_OK, err_console, fail

HostOpt = Annotated[str, typer.Option("--host", help="Bind address (IPv4 or IPv6).")]
PortOpt = Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port of /encode and /decode (0: any free port).")]
HealthPortOpt = Annotated[int | None, typer.Option(
    "--health-port", min=0, max=65535,
    help="Also serve /healthz on this port over plain HTTP (kubelet probes have no client certificate).")]


def codec_server(host: HostOpt = "0.0.0.0",  # noqa: S104 - a pod's port; the NetworkPolicy limits who reaches it
                 port: PortOpt = 8888, health_port: HealthPortOpt = None) -> None:
    """Serve POST /encode and /decode (Temporal's codec-server protocol) until SIGTERM or Ctrl-C."""
    from alga_worker.config import ConfigError, load_codec_server_settings
    from alga_worker.payload_codec import build_codec
    from alga_worker.runtime.codec_server import CodecServer, CodecServerConfigError, CodecServerOptions
    from alga_worker.runtime.logging import configure_logging

    try:
        settings = load_codec_server_settings()
    except ConfigError as err:
        raise fail(EXIT_CONFIG, str(err)) from None
    configure_logging(settings.log_level, settings.log_format, settings.secret_values(),
                      static={"service": "alga-codec-server", "build_id": settings.build_id,
                              "environment": settings.environment})
    codec = build_codec(settings)
    if codec is None or codec.keys is None:  # load_codec_server_settings requires keys; for the type checker
        raise fail(EXIT_CONFIG, "PAYLOAD_KEYS: required")
    keys = codec.keys
    options = CodecServerOptions(
        token=settings.token.get_secret_value() if settings.token is not None else None,
        cors_origins=settings.cors_origins, tls_cert=settings.tls_cert, tls_key=settings.tls_key,
        tls_client_ca=settings.tls_client_ca, max_body_bytes=settings.max_body_bytes)
    try:
        server = CodecServer(codec, options, host, port, health_port=health_port)
    except CodecServerConfigError as err:
        raise fail(EXIT_CONFIG, str(err)) from None
    except OSError as err:
        raise fail(EXIT_CONFIG, f"cannot listen on {host}:{port}: {err.strerror or type(err).__name__}") from None
    auth = " and ".join(name for name, on in (("bearer token", options.token), ("client certificates",
                                                                                 options.tls_client_ca)) if on)
    # The bound port on stderr: tests and `--port 0` read it from there.
    err_console.print(f"codec server on {server.scheme}://{host}:{server.port} ({auth}; keys "
                      f"{', '.join(keys.key_ids)}, active {keys.active_key_id})"
                      + (f"; /healthz on http port {server.health_port}" if server.health_port is not None else ""),
                      soft_wrap=True)
    _serve(server)
    raise typer.Exit(EXIT_OK)


def _serve(server: object) -> None:
    """Serve until SIGTERM (Kubernetes) or SIGINT; both end with exit 0."""
    import signal
    import threading

    from alga_worker.runtime.codec_server import CodecServer

    assert isinstance(server, CodecServer)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    try:
        stop.wait()
    finally:
        server.stop()
