"""The outbox provider: each message becomes one ``.eml`` file in a folder.

It is the default for local runs and tests, where no mail may leave the machine. It is also exactly
once by construction: the file name is a digest of the idempotency key, the file is published
atomically, and a second send with the same key finds the file and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from email import policy
from pathlib import Path

from alga_worker.email.errors import EmailTemporarilyUnavailable
from alga_worker.email.message import EmailMessage, SendResult
from alga_worker.email.mime import build_mime, key_digest

logger = logging.getLogger("alga_worker.email")


class OutboxEmailSender:
    """Writes RFC 5322 files (CRLF line ends, as on the wire) that any mail client opens."""

    name: str = "outbox"

    def __init__(self, directory: Path, *, from_address: str, from_name: str) -> None:
        self._directory = directory
        self._from_address = from_address
        self._from_name = from_name

    @property
    def directory(self) -> Path:
        return self._directory

    def path_for(self, idempotency_key: str) -> Path:
        """Where the message for ``idempotency_key`` is (or will be) written."""
        return self._directory / f"{key_digest(idempotency_key)}.eml"

    async def send(self, message: EmailMessage, *, idempotency_key: str) -> SendResult:
        """Write the message unless a message with this key is already there."""
        data = build_mime(
            message,
            idempotency_key=idempotency_key,
            from_address=self._from_address,
            from_name=self._from_name,
        ).as_bytes(policy=policy.SMTP)
        path = self.path_for(idempotency_key)
        try:
            created = await asyncio.to_thread(self._publish, path, data)
        except OSError as err:
            # A full disk or a permission problem may clear up; Temporal retries with the same key.
            raise EmailTemporarilyUnavailable(f"cannot write to the outbox: {err.strerror}") from err
        result = SendResult(provider=self.name, message_id=path.stem, destination=str(path),
                            duplicate=not created)
        logger.info(
            "email already in outbox" if result.duplicate else "email written to outbox",
            extra={"provider": self.name, "message_id": result.message_id,
                   "recipient_domains": message.recipient_domains},
        )
        return result

    async def aclose(self) -> None:
        """Nothing to release: files are closed as soon as they are written."""

    def _publish(self, path: Path, data: bytes) -> bool:
        """Write ``data`` to ``path`` unless it exists; return whether this call created it.

        The bytes go to a private temporary file in the same folder first, then appear under the final
        name in one step, so a reader never sees half a message. ``os.link`` publishes only if the
        name is free, so two concurrent attempts with one key (an old attempt still running after a
        timeout) still leave one file; where hard links are not supported, ``os.replace`` is the
        fallback (same content, and the existence check above it makes a race unlikely).
        """
        self._ensure_directory()
        if path.exists():
            return False
        fd, tmp_name = tempfile.mkstemp(dir=self._directory, prefix=".", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                return False
            except OSError:
                os.replace(tmp_name, path)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)

    def _ensure_directory(self) -> None:
        """Create the folder readable by the worker's user only: messages hold temporary passwords."""
        if self._directory.is_dir():
            return
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._directory, 0o700)  # mkdir's mode is filtered by the umask
