"""Job state store (embedded): SQLite, durable, with in-process watchers.

The embedded default runs API and workers in one process, so one SQLite file
is the source of truth and restarts lose no accepted job. Watchers get every
update of a job through an asyncio queue, tagged with the store's write
sequence number, so a watch can tell updates older than its snapshot (or than
what it already sent) from new ones whatever order the writer threads notify in.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

from understanding.codec import records
from understanding.domain import Conflict, Job, JobState


def _to_row(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "tenant": job.tenant,
        "idempotency_key": job.idempotency_key or None,
        "state": job.state.value,
        "created_at": job.created_at,
        # The whole job as its internal record (earlier versions stored JSON; both decode).
        "doc": records.encode_job(job.with_(result=None)),
        "result": job.result,
    }


def _from_row(row: Sequence[Any]) -> Job:
    job_id, tenant, key, state, created_at, doc, result = row
    if isinstance(doc, str):  # JSON of an earlier version: only the job's own fields
        return _legacy_row(job_id, tenant, key, state, created_at, json.loads(doc), result)
    job = records.decode_job(bytes(doc))
    return job.with_(result=bytes(result) if result is not None else None)


def _legacy_row(
    job_id: str, tenant: str, key: str | None, state: str, created_at: float, d: dict[str, Any], result: Any
) -> Job:
    doc = dict(d, job_id=job_id, tenant=tenant, state=state, created_at=created_at, idempotency_key=key or "")
    doc.pop("result", None)
    return records.decode_job(json.dumps(doc).encode()).with_(result=bytes(result) if result is not None else None)


_COLUMNS = "job_id, tenant, idempotency_key, state, created_at, doc, result"
_TERMINAL_SQL = ", ".join(f"'{s.value}'" for s in JobState if s.terminal)


class SqliteJobStore:
    def __init__(self, path: pathlib.Path, *, durable: bool = True) -> None:
        """`durable=False` for a materialised view that is rebuilt from Kafka on start."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
            " idempotency_key TEXT, state TEXT NOT NULL, created_at REAL NOT NULL, doc TEXT NOT NULL, result BLOB)"
        )
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_key ON jobs (tenant, idempotency_key)")
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, created_at)")
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state)")
        self._lock = threading.Lock()
        self._seq = 0  # write sequence number, advanced under the lock by every committed write
        self._watchers: dict[str, list[asyncio.Queue[tuple[int, Job]]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # ------------------------------------------------------------ writes
    def create(self, job: Job) -> tuple[Job, bool]:
        """Insert a new job, or return the existing one for the same (tenant, key).

        Raises Conflict when the key was used for a different request.
        """
        with self._lock:
            if job.idempotency_key:
                row = self._db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE tenant = ? AND idempotency_key = ?",
                    (job.tenant, job.idempotency_key),
                ).fetchone()
                if row is not None:
                    existing = _from_row(row)
                    if existing.fingerprint != job.fingerprint:
                        raise Conflict(
                            "was already used for a different request; use a new key for a new job",
                            field="spec.idempotency_key",
                        )
                    return existing, False
            r = _to_row(job)
            self._db.execute(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES (:job_id, :tenant, :idempotency_key, :state, :created_at, :doc, :result)",
                r,
            )
            seq = self._next_seq()
        self._notify(job, seq)
        return job, True

    def put(self, job: Job) -> bool:
        """Record the job's new state; False, and nothing written, if the stored job is terminal.

        The first terminal state wins (as in the Kafka view's `merge`): a progress
        report still in flight when the job finished, or a cancel that lost the
        race with the end of the job, must not rewrite it.
        """
        r = _to_row(job)
        with self._lock:
            written = self._db.execute(
                "UPDATE jobs SET state = :state, doc = :doc, result = :result WHERE job_id = :job_id"
                f" AND state NOT IN ({_TERMINAL_SQL})",
                r,
            ).rowcount
            if not written:
                return False
            seq = self._next_seq()
        self._notify(job, seq)
        return True

    def apply(self, records: Sequence[Job], merge: Callable[[Job | None, Job], Job | None]) -> list[Job]:
        """Materialise state records in order (one transaction): `merge(stored, record)` says
        what to store, or None to keep the stored job. Returns the jobs written."""
        written: list[Job] = []
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for record in records:
                    row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (record.job_id,)).fetchone()
                    job = merge(None if row is None else _from_row(row), record)
                    if job is None:
                        continue
                    self._db.execute(
                        f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES"
                        " (:job_id, :tenant, :idempotency_key, :state, :created_at, :doc, :result)",
                        _to_row(job),
                    )
                    written.append(job)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            seqs = [self._next_seq() for _ in written]
        for job, seq in zip(written, seqs, strict=True):
            self._notify(job, seq)
        return written

    # ------------------------------------------------------------ reads
    def get(self, job_id: str) -> Job | None:
        return self.snapshot(job_id)[1]

    def snapshot(self, job_id: str) -> tuple[int, Job | None]:
        """The job and the write sequence number it is current as of (see `watch`)."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            seq = self._seq
        return seq, None if row is None else _from_row(row)

    def list(
        self, tenant: str, *, states: Sequence[JobState] = (), after: tuple[float, str] | None = None, limit: int = 50
    ) -> list[Job]:
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE tenant = ?"
        args: list[Any] = [tenant]
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += [s.value for s in states]
        if after is not None:
            sql += " AND (created_at, job_id) < (?, ?)"
            args += list(after)
        sql += " ORDER BY created_at DESC, job_id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_from_row(r) for r in rows]

    def unfinished(self) -> builtins.list[Job]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('QUEUED', 'RUNNING') ORDER BY created_at"
            ).fetchall()
        return [_from_row(r) for r in rows]

    def count(self, *, states: Sequence[JobState], tenant: str | None = None) -> int:
        sql = f"SELECT COUNT(*) FROM jobs WHERE state IN ({','.join('?' * len(states))})"
        args: list[Any] = [s.value for s in states]
        if tenant is not None:
            sql += " AND tenant = ?"
            args.append(tenant)
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    # ------------------------------------------------------------ watch
    def watch(self, job_id: str) -> asyncio.Queue[tuple[int, Job]]:
        """A queue of (write sequence number, job) for every write of the job from now on.

        Take the `snapshot` after this call: updates numbered up to the snapshot's
        are already in it, and notifications from writer threads may arrive out
        of order, so a reader skips any number not above the last it used.
        """
        queue: asyncio.Queue[tuple[int, Job]] = asyncio.Queue()
        self._watchers.setdefault(job_id, []).append(queue)
        return queue

    def unwatch(self, job_id: str, queue: asyncio.Queue[tuple[int, Job]]) -> None:
        queues = self._watchers.get(job_id, [])
        if queue in queues:
            queues.remove(queue)
        if not queues:
            self._watchers.pop(job_id, None)

    def _next_seq(self) -> int:
        self._seq += 1  # (under self._lock)
        return self._seq

    def _notify(self, job: Job, seq: int) -> None:
        queues = list(self._watchers.get(job.job_id, ()))
        if not queues or self._loop is None:
            return
        for queue in queues:
            self._loop.call_soon_threadsafe(queue.put_nowait, (seq, job))

    def close(self) -> None:
        with self._lock:
            self._db.close()
