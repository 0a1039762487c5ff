"""Tenant export: every row of one tenant, table by table, as gzip JSON Lines with a manifest.

What the original did and this does instead: the TypeScript activity read a fixed list of tables
whole into memory (``select('*')``, password hashes included), built one JSON document and uploaded
it; a failure returned ``success: false``. Here (``db/tenant_export.py`` has the SQL and the rules):

- **One snapshot.** All tables are read in one ``REPEATABLE READ READ ONLY`` transaction, so the
  export is one consistent moment of the tenant (no ticket without its client).
- **Flat memory.** Each table streams through a server-side cursor in batches of
  ``EXPORT_BATCH_SIZE`` rows; a batch is encoded and compressed into a temporary file in a thread
  (the event loop keeps heartbeating), so the worker holds one batch, whatever the tenant's size.
  Once the transaction has ended, the files are uploaded (boto3 ``upload_file``: multipart above
  64 MiB, in a thread) or moved into ``EXPORT_DIR``; the manifest goes last, so a manifest means a
  complete export.
- **No secrets.** Secret-looking columns are never selected, secret-looking keys inside JSON values
  are dropped; the manifest lists what was left out, by name.
- **Idempotent.** Keys are ``<prefix>/<tenantId>/<exportId>/<table>.jsonl.gz`` and ``.../manifest.json``;
  the gzip header carries no time or name, so a retried attempt rewrites the same keys with the same
  bytes when the data has not changed.
- **Typed failures.** Unknown tenant: ``TenantNotFoundError`` before anything is written. Neither
  ``EXPORT_S3_BUCKET`` nor ``EXPORT_DIR`` set, a bucket that does not exist or refuses our
  credentials, a folder we may not write: ``ConfigurationError`` (non-retryable, names the variables).
  A store that does not answer: ``ExportStorageUnavailableError`` (retried).
- **Progress.** Heartbeats every 2 s carry ``{step, table, tablesDone, tableCount, rows}``.

Registered as a bound method, as :class:`alga_worker.activities.licenses.LicenseActivities` is.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO
from uuid import UUID

from psycopg import IsolationLevel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from alga_worker import errors
from alga_worker.activities.heartbeat import heartbeating
from alga_worker.config import Settings
from alga_worker.db import tenant_export as sql
from alga_worker.db.pool import DbPool
from alga_worker.models import ExportDestination, ExportedTable, TenantExportInput, TenantExportOutcome

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
HEARTBEAT_SECONDS = 2.0
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
# S3 error codes no retry can fix: the bucket or the credentials are wrong.
_S3_REFUSALS = frozenset({"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                          "InvalidBucketName", "AllAccessDisabled", "AccountProblem", "InvalidToken",
                          "ExpiredToken", "AuthorizationHeaderMalformed", "PermanentRedirect", "403", "404"})


def _default(value: Any) -> Any:
    """JSON for what psycopg returns beyond JSON's types: exact decimals and times as strings."""
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)  # inet, ranges, enums ...


class _Digest:
    """A write-only file that hashes and counts what passes through (the compressed bytes)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


class TableWriter:
    """One table's ``.jsonl.gz`` file: rows in, compressed and hashed on the way to disk."""

    def __init__(self, path: Path, table: sql.TenantTable) -> None:
        self.path = path
        self.table = table
        self.rows = 0
        self.redacted_json_keys = 0
        self._names = [c.name for c in table.columns]
        self._json = [c.is_json for c in table.columns]
        self._raw = path.open("wb")
        self._digest = _Digest(self._raw)
        # mtime 0 and no file name: the same rows give the same bytes (a retry rewrites identically).
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._digest, mtime=0,
                                   compresslevel=6)

    def write_batch(self, rows: Sequence[tuple[Any, ...]]) -> None:
        lines = []
        for row in rows:
            record = {}
            for name, is_json, value in zip(self._names, self._json, row, strict=True):
                if is_json and value is not None:
                    value, removed = sql.scrub_json(value)
                    self.redacted_json_keys += removed
                record[name] = value
            lines.append(json.dumps(record, default=_default, ensure_ascii=False, separators=(",", ":")))
        if lines:
            self._gzip.write(("\n".join(lines) + "\n").encode("utf-8"))
        self.rows += len(rows)

    def close(self) -> tuple[int, str]:
        """Finish the file; (compressed size, sha256 hex)."""
        self._gzip.close()
        self._raw.close()
        return self._digest.size, self._digest.sha256.hexdigest()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._gzip.close()
        with contextlib.suppress(Exception):
            self._raw.close()


@dataclass
class _Written:
    table: sql.TenantTable
    path: Path
    rows: int
    size: int
    sha256: str
    redacted_json_keys: int


class _Progress:
    """What the background heartbeat reports: the latest step, table and counts."""

    def __init__(self, export_id: UUID, table_count: int = 0) -> None:
        self.details: dict[str, Any] = {"exportId": str(export_id), "step": "collecting_data", "table": None,
                                        "tablesDone": 0, "tableCount": table_count, "rows": 0}

    def update(self, **changes: Any) -> None:
        self.details = {**self.details, **changes}


@contextlib.asynccontextmanager
async def _snapshot(conn: Any) -> AsyncIterator[None]:
    """The next transaction on ``conn`` is ``REPEATABLE READ READ ONLY`` (one snapshot of every table);
    the connection goes back to the pool with its defaults."""
    await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
    await conn.set_read_only(True)
    try:
        yield
    finally:
        await conn.set_read_only(None)
        await conn.set_isolation_level(None)


class TenantExportActivities:
    def __init__(self, pool: DbPool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    # ---- where the export goes

    def _destination(self) -> ExportDestination:
        if self._settings.export_s3_bucket:
            return ExportDestination.S3
        if self._settings.export_dir is not None:
            return ExportDestination.LOCAL
        raise errors.configuration_error(
            "tenant exports need a destination: set EXPORT_S3_BUCKET (with EXPORT_S3_ENDPOINT_URL for a "
            "non-AWS store) or EXPORT_DIR", {"variables": ["EXPORT_S3_BUCKET", "EXPORT_DIR"]})

    def export_key(self, tenant_id: UUID, export_id: UUID) -> str:
        prefix = self._settings.export_s3_prefix
        return "/".join(p for p in (prefix, str(tenant_id), str(export_id)) if p)

    def _s3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        s = self._settings
        session = boto3.session.Session(
            aws_access_key_id=s.export_s3_access_key_id.get_secret_value() if s.export_s3_access_key_id else None,
            aws_secret_access_key=(s.export_s3_secret_access_key.get_secret_value()
                                   if s.export_s3_secret_access_key else None),
            region_name=s.export_s3_region)
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                        s3={"addressing_style": "path"} if s.export_s3_endpoint_url else None)
        endpoint = str(s.export_s3_endpoint_url) if s.export_s3_endpoint_url else None
        return session.client("s3", endpoint_url=endpoint, config=config)

    # ---- the activity

    @activity.defn(name="export_tenant_data")
    async def export_tenant_data(self, req: TenantExportInput) -> TenantExportOutcome:
        """Write the tenant's export and its manifest; the outcome says where (module docstring)."""
        destination = self._destination()
        export_key = self.export_key(req.tenant_id, req.export_id)
        progress = _Progress(req.export_id)
        context = {"tenant_id": str(req.tenant_id), "export_id": str(req.export_id)}
        # Local: the temporary folder inside EXPORT_DIR, so the files are renamed into place, not copied.
        work_root = self._local_root() if destination is ExportDestination.LOCAL else None
        async with heartbeating(HEARTBEAT_SECONDS, details=lambda: progress.details):
            with tempfile.TemporaryDirectory(prefix=".export-", dir=work_root) as tmp:
                name, version, snapshot_at, written = await self._collect(req, Path(tmp), progress)
                log.info("tenant export collected", extra={**context, "tables": len(written),
                                                           "rows": sum(w.rows for w in written)})
                tables = [ExportedTable(table=w.table.name, key=f"{export_key}/{w.table.name}.jsonl.gz", rows=w.rows,
                                        bytes=w.size, sha256=w.sha256, excluded_columns=list(w.table.excluded))
                          for w in written]
                created_at = req.requested_at or snapshot_at
                manifest = _manifest(req, name, version, snapshot_at, created_at, written, tables)
                manifest_path = Path(tmp) / MANIFEST_NAME
                manifest_path.write_bytes(json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8"))
                progress.update(step="uploading", table=None, tablesDone=0)
                files = [(w.path, t.key, "application/gzip") for w, t in zip(written, tables, strict=True)]
                files.append((manifest_path, f"{export_key}/{MANIFEST_NAME}", "application/json"))
                if destination is ExportDestination.S3:
                    await self._upload(files, progress)
                    bucket = self._settings.export_s3_bucket
                    location = f"s3://{bucket}/{export_key}/"
                else:
                    bucket = None
                    location = await self._move(files, progress)
        outcome = TenantExportOutcome(
            export_id=req.export_id, tenant_id=req.tenant_id, tenant_name=name, destination=destination,
            bucket=bucket, location=location, export_key=export_key, manifest_key=f"{export_key}/{MANIFEST_NAME}",
            schema_version=version, created_at=created_at, file_size_bytes=sum(t.bytes for t in tables),
            table_count=len(tables), record_count=sum(t.rows for t in tables), tables=tables)
        log.info("tenant export written", extra={**context, "destination": destination.value, "location": location,
                                                 "tables": outcome.table_count, "rows": outcome.record_count,
                                                 "bytes": outcome.file_size_bytes})
        return outcome

    async def _collect(self, req: TenantExportInput, tmp: Path,
                       progress: _Progress) -> tuple[str | None, str | None, datetime, list[_Written]]:
        """Every table of the tenant into ``tmp``, in one read-only snapshot; TenantNotFoundError first."""
        batch = self._settings.export_batch_size
        written: list[_Written] = []
        async with self._pool.connection() as conn, _snapshot(conn), conn.transaction():
            exists, name = await sql.tenant_name(conn, req.tenant_id)
            if not exists:
                raise errors.tenant_not_found_error(f"tenant {req.tenant_id} does not exist",
                                                    {"tenantId": str(req.tenant_id)})
            version = await sql.schema_version(conn)
            cur = await conn.execute("SELECT now() AS at")
            row = await cur.fetchone()
            snapshot_at: datetime = row["at"] if row else datetime.now(UTC)
            tables = await sql.tenant_tables(conn)
            progress.update(tableCount=len(tables))
            total = 0
            for done, table in enumerate(tables):
                progress.update(table=table.name, tablesDone=done)
                writer = TableWriter(tmp / f"{table.name}.jsonl.gz", table)
                try:
                    async for rows in sql.stream_rows(conn, table, req.tenant_id, batch):
                        await asyncio.to_thread(writer.write_batch, rows)
                        total += len(rows)
                        progress.update(rows=total)
                    size, digest = await asyncio.to_thread(writer.close)
                except BaseException:
                    writer.abort()
                    raise
                written.append(_Written(table, writer.path, writer.rows, size, digest, writer.redacted_json_keys))
            progress.update(table=None, tablesDone=len(tables))
        return name, version, snapshot_at, written

    # ---- S3

    async def _upload(self, files: list[tuple[Path, str, str]], progress: _Progress) -> None:
        from boto3.s3.transfer import TransferConfig

        bucket = self._settings.export_s3_bucket
        transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK,
                                  max_concurrency=4, use_threads=True)
        try:
            client = await asyncio.to_thread(self._s3_client)
            for done, (path, key, content_type) in enumerate(files):
                progress.update(table=key.rsplit("/", 1)[-1], tablesDone=done)
                await asyncio.to_thread(client.upload_file, str(path), bucket, key,
                                        ExtraArgs={"ContentType": content_type}, Config=transfer)
        except Exception as err:
            raise _storage_error(err, bucket) from None

    # ---- local folder

    def _local_root(self) -> Path:
        root = self._settings.export_dir
        assert root is not None
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=root, prefix=".probe-")  # noqa: SIM115
            probe.close()
        except PermissionError as err:
            raise errors.configuration_error(f"EXPORT_DIR is not writable ({type(err).__name__})",
                                             {"variables": ["EXPORT_DIR"]}) from None
        except OSError as err:
            if isinstance(err, NotADirectoryError | FileExistsError):
                raise errors.configuration_error(f"EXPORT_DIR is not a folder ({type(err).__name__})",
                                                 {"variables": ["EXPORT_DIR"]}) from None
            raise _retryable(f"EXPORT_DIR cannot be used: {type(err).__name__}") from None
        return root

    async def _move(self, files: list[tuple[Path, str, str]], progress: _Progress) -> str:
        root = self._local_root()

        def move() -> Path:
            target = root
            for done, (path, key, _) in enumerate(files):
                progress.update(table=key.rsplit("/", 1)[-1], tablesDone=done)
                target = root / key
                target.parent.mkdir(parents=True, exist_ok=True)
                # Same file system (the temporary folder is inside EXPORT_DIR): an atomic rename.
                os.replace(path, target) if path.stat().st_dev == root.stat().st_dev else shutil.move(path, target)
            return target.parent

        try:
            folder = await asyncio.to_thread(move)
        except PermissionError as err:
            raise errors.configuration_error(f"EXPORT_DIR is not writable ({type(err).__name__})",
                                             {"variables": ["EXPORT_DIR"]}) from None
        except OSError as err:
            raise _retryable(f"cannot write the export into EXPORT_DIR: {type(err).__name__}") from None
        return str(folder)


def _manifest(req: TenantExportInput, name: str | None, version: str | None, snapshot_at: datetime,
              created_at: datetime, written: list[_Written], tables: list[ExportedTable]) -> dict[str, Any]:
    """The export's table of contents (docs/lifecycle.md "Export", manifest fields)."""
    return {
        "formatVersion": FORMAT_VERSION,
        "format": "jsonl+gzip",
        "exportId": str(req.export_id),
        "tenantId": str(req.tenant_id),
        "tenantName": name,
        "createdAt": created_at.isoformat(),
        "snapshotAt": snapshot_at.isoformat(),
        "requestedBy": req.requested_by,
        "reason": req.reason,
        "schemaVersion": version,
        "tableCount": len(tables),
        "recordCount": sum(t.rows for t in tables),
        "totalBytes": sum(t.bytes for t in tables),
        "excludedColumns": [f"{w.table.name}.{c}" for w in written for c in w.table.excluded],
        "secretColumnRule": "columns and JSON keys whose name has a word in SECRET_WORDS or an adjacent pair in "
                            "SECRET_PAIRS (alga_worker.db.tenant_export) are left out",
        "tables": [
            {"table": t.table, "key": t.key, "rows": t.rows, "bytes": t.bytes, "sha256": t.sha256,
             "columns": [{"name": c.name, "type": c.type} for c in w.table.columns],
             "excludedColumns": list(w.table.excluded), "redactedJsonKeys": w.redacted_json_keys,
             "orderedBy": list(w.table.order_by)}
            for w, t in zip(written, tables, strict=True)
        ],
    }


def _retryable(message: str) -> ApplicationError:
    return ApplicationError(message, type=errors.EXPORT_STORAGE_UNAVAILABLE)


def _storage_error(err: Exception, bucket: str | None) -> ApplicationError:
    """A boto3 failure typed: a refusal (wrong bucket or credentials) is final, anything else retries."""
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return errors.configuration_error(
            "no credentials for the export bucket: set EXPORT_S3_ACCESS_KEY_ID and EXPORT_S3_SECRET_ACCESS_KEY or "
            "give the pod an AWS identity", {"variables": ["EXPORT_S3_ACCESS_KEY_ID", "EXPORT_S3_SECRET_ACCESS_KEY"]})
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ClientError):  # upload_file wraps it in S3UploadFailedError
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ClientError):
        code = str(cause.response.get("Error", {}).get("Code", ""))
        if code in _S3_REFUSALS:
            return errors.configuration_error(
                f"the export bucket {bucket!r} refused the upload ({code})",
                {"variables": ["EXPORT_S3_BUCKET", "EXPORT_S3_ENDPOINT_URL", "EXPORT_S3_ACCESS_KEY_ID"]})
        return _retryable(f"the export bucket did not accept the upload ({code or type(cause).__name__})")
    # S3UploadFailedError keeps only the message: the refusal codes are named in it.
    text = str(err)
    refused = next((code for code in _S3_REFUSALS if f"({code})" in text), None)
    if refused is not None:
        return errors.configuration_error(
            f"the export bucket {bucket!r} refused the upload ({refused})",
            {"variables": ["EXPORT_S3_BUCKET", "EXPORT_S3_ENDPOINT_URL", "EXPORT_S3_ACCESS_KEY_ID"]})
    return _retryable(f"the export bucket is unreachable ({type(err).__name__})")
