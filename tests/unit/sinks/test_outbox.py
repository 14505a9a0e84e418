from __future__ import annotations

import pathlib

from understanding.sinks.outbox import Outbox, OutboxRecord


def rec(i: int) -> OutboxRecord:
    return OutboxRecord(
        topic="t",
        key=f"k{i}".encode(),
        value=bytes([i, 0, 255]),
        headers=(("schema", b"s"), ("bin", b"\x00\xff")),
        event_id=f"e{i}",
    )


def test_append_peek_remove_in_order(tmp_path: pathlib.Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.append([rec(i) for i in range(5)])
    pending = box.peek(3)
    assert [p.record for p in pending] == [rec(0), rec(1), rec(2)]
    box.remove([pending[0].seq, pending[2].seq])
    assert [p.record.event_id for p in box.peek(10)] == ["e1", "e3", "e4"]
    assert box.size() == 3
    box.close()


def test_survives_reopen(tmp_path: pathlib.Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.append([rec(1)])
    box.close()
    box = Outbox(tmp_path / "o.sqlite3")
    assert [p.record for p in box.peek(10)] == [rec(1)]
    assert box.oldest_age_s() >= 0
    box.close()
