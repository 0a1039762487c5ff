"""A TCP proxy on 127.0.0.1 that can make its upstream unreachable on demand, for outage tests.

Point a client at :attr:`TcpProxy.address` instead of the real server. :meth:`TcpProxy.pause` closes
every proxied connection and from then on resets each new one right after accepting it (SO_LINGER 0:
the client sees "connection reset", as from a server that is down behind a load balancer);
:meth:`TcpProxy.resume` proxies again. The listening port never changes, so the client reconnects to
the same address by itself once the outage ends. Threads only: usable from sync and async tests.

    with TcpProxy("127.0.0.1", 7233) as proxy:
        env["TEMPORAL_ADDRESS"] = proxy.address
        proxy.pause(); ...; proxy.resume()
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

_ACCEPT_POLL_SECONDS = 0.1


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_ACCEPT_POLL_SECONDS)
        self._lock = threading.Lock()
        self._paused = False
        self._closed = threading.Event()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self.accepted = 0  # connections proxied
        self.refused = 0  # connections reset because the proxy was paused

    @classmethod
    def to(cls, address: str) -> TcpProxy:
        host, _, port = address.rpartition(":")
        return cls(host.strip("[]") or "127.0.0.1", int(port))

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def paused(self) -> bool:
        return self._paused

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def pause(self) -> None:
        """The upstream becomes unreachable: open connections are cut, new ones are reset."""
        with self._lock:
            self._paused = True
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            _close_pair(pair)

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def close(self) -> None:
        self._closed.set()
        self.pause()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if self._paused:
                self._reset(client)
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                self._reset(client)
                continue
            upstream.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                if self._paused:  # paused while connecting
                    _close_pair(pair)
                    self.refused += 1
                    continue
                self._pairs.add(pair)
                self.accepted += 1
            for src, dst in (pair, pair[::-1]):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _reset(self, sock: socket.socket) -> None:
        with self._lock:
            self.refused += 1
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket]) -> None:
        with contextlib.suppress(OSError):  # a closed side ends the pump
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        with self._lock:
            self._pairs.discard(pair)
        _close_pair(pair)


def _close_pair(pair: tuple[socket.socket, socket.socket]) -> None:
    for sock in pair:
        with contextlib.suppress(OSError):  # already closed by the other pump
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
