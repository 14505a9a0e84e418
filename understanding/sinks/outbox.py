"""Durable outbox for events: written before publishing, deleted once Kafka acked.

SQLite in WAL mode with synchronous=FULL, so an event survives a crash or a
broker outage; the relay drains it in insertion order. With no broker
configured the outbox simply keeps the events (the embedded default).
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    event_id: str


@dataclass(frozen=True, slots=True)
class PendingEvent:
    seq: int
    record: OutboxRecord
    created_at: float


class Outbox:
    def __init__(self, path: pathlib.Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " event_id TEXT NOT NULL, topic TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
            " headers TEXT NOT NULL, created_at REAL NOT NULL)"
        )

    def append(self, records: Sequence[OutboxRecord]) -> None:
        """Durably store records in one transaction (group commit for concurrent writers)."""
        if not records:
            return
        rows = [
            (r.event_id, r.topic, r.key, r.value, json.dumps([(k, v.hex()) for k, v in r.headers]), time.time())
            for r in records
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO outbox (event_id, topic, key, value, headers, created_at) VALUES (?,?,?,?,?,?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def peek(self, limit: int) -> list[PendingEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, topic, key, value, headers, created_at FROM outbox ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            PendingEvent(
                seq=seq,
                record=OutboxRecord(
                    topic=topic,
                    key=bytes(key),
                    value=bytes(value),
                    headers=tuple((k, bytes.fromhex(v)) for k, v in json.loads(headers)),
                    event_id=event_id,
                ),
                created_at=created,
            )
            for seq, event_id, topic, key, value, headers, created in rows
        ]

    def remove(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def oldest_age_s(self) -> float:
        with self._lock:
            row = self._db.execute("SELECT MIN(created_at) FROM outbox").fetchone()
        return 0.0 if row[0] is None else max(0.0, time.time() - float(row[0]))

    def close(self) -> None:
        with self._lock:
            self._db.close()
