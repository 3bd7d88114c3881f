"""Call records from the gateway and the ingest API into the call log and rollups.

    enqueue / enqueue_async ─XADD─▶ stream km:calls ─▶ flush_calls (consumer group)
          │ Redis down                                  ONE transaction: insert ApiCall
          ▼                                             rows (new ones only) + rollups
    spool file (append-only) ─replay_spool─▶ stream     commit → live budget counters → XACK+XDEL

Exactly-once counting comes from the unique request_id: a record delivered twice
(replayed spool, reclaimed from a dead worker, re-read after a crash between commit
and ack) inserts nothing the second time, and only inserted rows reach the rollups,
in the same transaction. The stream is never trimmed by length: a record leaves it
only after its flush has committed.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import socket
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from django.conf import settings
from django.db import DataError, IntegrityError, transaction

from dashboard.redis_client import get_async_redis, get_redis
from usage import hardlimit, lastused, rollups
from usage.records import CallRecord
from usage.rollups import PricedCall

log = logging.getLogger(__name__)

STREAM = "km:calls"
GROUP = "flush"
DEAD_LETTERS = "km:calls:dead"  # records no flush can store, kept for a human to look at
CLAIM_IDLE_MS = 30_000  # a pending entry this old belongs to a dead (or stuck) consumer
SPOOL_NAME = "calls.spool"
# Spooled lines go to the kernel with one write() each, so a crashed process loses
# nothing; fsync (which waits for the disk, milliseconds) runs at most this often,
# so only a power cut can lose the last SPOOL_FSYNC_MS of an outage's records.
SPOOL_FSYNC_MS = 200
REDIS_RETRY_SECONDS = 1.0  # after a failure, spool without trying Redis for this long
NUMBER_LIMITS = {"status_code": 32_767, "latency_ms": 2**31 - 1, "ttfb_ms": 2**31 - 1}
RECORD_FIELDS = frozenset(f.name for f in dataclass_fields(CallRecord))
TEXT_LIMITS = {"request_id": 100, "source": 10, "endpoint": 100, "model": 100, "error_type": 100}


# Enqueue


_redis_down_until: dict[str, float] = {}
_last_fsync = 0.0


def _redis_is_resting(url: str) -> bool:
    return time.monotonic() < _redis_down_until.get(url, 0.0)


def _mark_down(url: str, exc: Exception) -> None:
    _redis_down_until[url] = time.monotonic() + REDIS_RETRY_SECONDS
    log.warning("Redis unreachable (%s); spooling call records", type(exc).__name__)


def _came_back(url: str) -> None:
    """After an outage, replay what this machine spooled without waiting for the flush."""
    if _redis_down_until.pop(url, None) is None:
        return

    def replay() -> None:
        try:
            replay_spool()
        except Exception:
            log.warning("spool replay failed; the flush task retries it", exc_info=True)

    threading.Thread(target=replay, name="spool-replay", daemon=True).start()


def enqueue(record: CallRecord) -> None:
    """Append one record to the stream; spool it to disk if Redis is unreachable."""
    line = record.to_json()
    url = settings.REDIS_URL
    if not _redis_is_resting(url):
        try:
            get_redis().xadd(STREAM, {"r": line})
            if _redis_down_until:
                _came_back(url)
            return
        except redis.RedisError as exc:
            _mark_down(url, exc)
    spool(line)


async def enqueue_async(record: CallRecord) -> None:
    """enqueue() for the gateway's event loop."""
    line = record.to_json()
    url = settings.REDIS_URL
    if not _redis_is_resting(url):
        try:
            await get_async_redis().xadd(STREAM, {"r": line})
            if _redis_down_until:
                _came_back(url)
            return
        except redis.RedisError as exc:
            _mark_down(url, exc)
    await asyncio.to_thread(spool, line)  # a due fsync must not stall the loop


_XADD_MANY = """
for _, line in ipairs(ARGV) do redis.call('XADD', KEYS[1], '*', 'r', line) end
return #ARGV
"""
_xadd_many_shas: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def _xadd_many_sha(client: redis.asyncio.Redis) -> str:
    sha = _xadd_many_shas.get(client)
    if sha is None:
        sha = _xadd_many_shas[client] = await client.script_load(_XADD_MANY)
    return sha


async def enqueue_many_async(records: list[CallRecord]) -> None:
    """Several records in one round trip (one pipelined batch of XADDs)."""
    lines = [record.to_json() for record in records]
    url = settings.REDIS_URL
    if not _redis_is_resting(url):
        try:
            # One command for the whole batch: redis-py's per-command packing costs more
            # CPU than the XADDs themselves.
            client = get_async_redis()
            try:
                await client.evalsha(await _xadd_many_sha(client), 1, STREAM, *lines)
            except redis.exceptions.NoScriptError:  # Redis restarted: load it again
                _xadd_many_shas.pop(client, None)
                await client.evalsha(await _xadd_many_sha(client), 1, STREAM, *lines)
            if _redis_down_until:
                _came_back(url)
            return
        except redis.RedisError as exc:
            # Some XADDs may have landed: spooling them again is harmless, the unique
            # request id counts each call once.
            _mark_down(url, exc)
    await asyncio.to_thread(_spool_all, lines)


def _spool_all(lines: list[bytes]) -> None:
    for line in lines:
        spool(line)


# Spool


def spool_dir() -> Path:
    return Path(settings.SPOOL_DIR)


def spool(line: bytes) -> None:
    """Append one line to the spool file; safe for many processes at once.

    O_APPEND and one write() per line keep lines whole between writers. The shared
    lock plus the inode check make sure the line lands in the file that is current
    when it is written, never in one a replay has already read and deleted.
    """
    global _last_fsync
    directory = spool_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SPOOL_NAME
    data = line.rstrip(b"\n") + b"\n"
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:
                continue  # a replay took this file away: write to the new one
            os.write(fd, data)
            now = time.monotonic()
            if (now - _last_fsync) * 1000 >= SPOOL_FSYNC_MS:
                os.fsync(fd)
                _last_fsync = now
            return
        finally:
            os.close(fd)


def replay_spool(chunk: int = 1000) -> int:
    """Move spooled records into the stream; return how many lines were pushed.

    The file is renamed first, so new appends start a fresh one. A replay that dies
    half-way leaves its file behind and the next replay pushes it again: duplicates
    are harmless, the flush counts each request_id once.
    """
    directory = spool_dir()
    active = directory / SPOOL_NAME
    if not directory.is_dir():
        return 0
    if active.exists():
        try:
            active.rename(directory / f"replay-{time.time_ns()}-{os.getpid()}.spool")
        except FileNotFoundError:
            pass  # another replay renamed it first
    pushed = 0
    r = get_redis()
    for path in sorted(directory.glob("replay-*.spool")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            # Waits for writers still appending to it; skip it if another replay finished it.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:
                continue
            with os.fdopen(os.dup(fd), "rb") as f:
                lines = [line.strip() for line in f if line.strip()]
            for i in range(0, len(lines), chunk):
                with r.pipeline(transaction=False) as pipe:
                    for line in lines[i : i + chunk]:
                        pipe.xadd(STREAM, {"r": line})
                    pipe.execute()
            path.unlink()
            pushed += len(lines)
        finally:
            os.close(fd)
    if pushed:
        log.info("replayed %d spooled call records", pushed)
    return pushed


# Flush


@dataclass
class FlushResult:
    read: int = 0  # stream entries handled (new, own pending and reclaimed)
    inserted: int = 0  # new ApiCall rows, added into the rollups
    duplicates: int = 0  # request ids already stored: not counted again
    skipped: int = 0  # project or environment deleted since the call
    poison: int = 0  # unreadable records: acked, logged, kept in km:calls:dead
    reclaimed: int = 0  # taken over from consumers idle longer than CLAIM_IDLE_MS
    replayed: int = 0  # spooled lines pushed back into the stream (drain only)
    cost_usd: Decimal = Decimal(0)
    projects: set[int] = field(default_factory=set)  # whose spend moved

    def add(self, other: FlushResult) -> None:
        for name in ("read", "inserted", "duplicates", "skipped", "poison", "reclaimed",
                     "replayed", "cost_usd"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.projects |= other.projects

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost_usd"] = rollups.money_str(self.cost_usd)
        data["projects"] = sorted(self.projects)
        return data


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def ensure_group(r: redis.Redis) -> None:
    try:
        r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _read(r: redis.Redis, consumer: str, count: int, claim_idle_ms: int) -> tuple[list, int]:
    """Entries to handle: our own unacked ones, then a dead consumer's, then new ones."""
    entries: dict[bytes, Any] = {}
    # redis-py types its replies for sync and async clients at once: Any is the truth here.
    own: Any = r.xreadgroup(GROUP, consumer, {STREAM: "0"}, count=count)
    for entry_id, fields in own[0][1] if own else []:
        entries[entry_id] = fields
    reclaimed = 0
    if len(entries) < count:
        claimed: Any = r.xautoclaim(STREAM, GROUP, consumer, claim_idle_ms, "0-0",
                               count=count - len(entries))  # fmt: skip
        # An entry deleted while pending comes back as None (Redis 6.2) or in a third
        # list that Redis 7 has already dropped from the pending list: nothing to do.
        for entry_id, fields in claimed[1]:
            if entry_id is not None and entry_id not in entries:
                entries[entry_id] = fields
                reclaimed += 1
    if len(entries) < count:
        new: Any = r.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=count - len(entries))
        for entry_id, fields in new[0][1] if new else []:
            entries[entry_id] = fields
    return list(entries.items()), reclaimed


def _parse(raw: Any) -> CallRecord:
    """A record from a stream entry, or ValueError/TypeError when it is unusable."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    # CallRecord.from_json without its per-call fields() lookup: this runs per record.
    record = CallRecord(**{k: v for k, v in data.items() if k in RECORD_FIELDS})
    for name in ("project_id", "environment_id", "input_tokens", "cached_input_tokens",
                 "output_tokens", "reasoning_tokens", "status_code", "latency_ms"):  # fmt: skip
        value = getattr(record, name)
        if type(value) is not int or not 0 <= value < 2**63:
            raise ValueError(f"{name} is not a non-negative integer")
    for name in ("provider_key_id", "gateway_token_id", "ttfb_ms"):
        value = getattr(record, name)
        if value is not None and (type(value) is not int or not 0 <= value < 2**63):
            raise ValueError(f"{name} is not a non-negative integer")
    for name, limit in NUMBER_LIMITS.items():
        value = getattr(record, name)
        if value is not None and value > limit:
            raise ValueError(f"{name} is out of range")
    if not isinstance(record.request_id, str) or not record.request_id:
        raise ValueError("request_id is missing")
    for name, limit in TEXT_LIMITS.items():
        value = getattr(record, name)
        if not isinstance(value, str):
            raise ValueError(f"{name} is not a string")
        if len(value) > limit:
            if name == "request_id":
                raise ValueError("request_id is too long")
            setattr(record, name, value[:limit])  # keep the call, cut the label
    if not isinstance(record.created_at, int | float) or isinstance(record.created_at, bool):
        raise ValueError("created_at is not a number")
    record.cached_input_tokens = min(record.cached_input_tokens, record.input_tokens)
    record.reasoning_tokens = min(record.reasoning_tokens, record.output_tokens)
    if not isinstance(record.audio_seconds, str | int) or isinstance(record.audio_seconds, bool):
        raise ValueError("audio_seconds is not a decimal string")
    audio = Decimal(str(record.audio_seconds))
    if not audio.is_finite() or not 0 <= audio < 10**11:
        raise ValueError("audio_seconds is out of range")
    record.audio_seconds = str(audio.quantize(Decimal("0.001")))
    record.stream, record.batch = bool(record.stream), bool(record.batch)
    return record


def _store(calls: list[PricedCall]) -> list[PricedCall]:
    """ONE transaction: insert the calls, add only the inserted ones to the rollups."""
    with transaction.atomic():
        new_ids = rollups.insert_calls(calls)
        new = [c for c in calls if c.record.request_id in new_ids]
        rollups.add_to_rollups(new)
        lastused.mark_last_used(new)
    return new


def _store_one_by_one(calls: list[PricedCall], raws: dict[str, Any], r: redis.Redis) -> tuple:
    """After a batch failed on a bad value: store what can be stored, dead-letter the rest."""
    new, failed = [], 0
    for c in calls:
        try:
            new += _store([c])
        except (DataError, IntegrityError):
            log.exception("call record %s cannot be stored; moved to %s",
                          c.record.request_id, DEAD_LETTERS)  # fmt: skip
            r.xadd(DEAD_LETTERS, {"r": raws[c.record.request_id]})
            failed += 1
    return new, failed


def _ack(r: redis.Redis, entry_ids: list[bytes]) -> None:
    with r.pipeline(transaction=True) as pipe:
        pipe.xack(STREAM, GROUP, *entry_ids)
        pipe.xdel(STREAM, *entry_ids)
        pipe.execute()


def flush_calls(
    batch_size: int = 1000, consumer: str | None = None, *, claim_idle_ms: int = CLAIM_IDLE_MS
) -> FlushResult:
    """Move one batch from the stream into ApiCall and the rollups; see the module doc."""
    rollups.check_database()
    r = get_redis()
    ensure_group(r)
    entries, reclaimed = _read(r, consumer or default_consumer(), batch_size, claim_idle_ms)
    result = FlushResult(read=len(entries), reclaimed=reclaimed)
    if not entries:
        return result
    records: dict[str, CallRecord] = {}  # by request_id: the first copy wins
    raws: dict[str, Any] = {}
    for entry_id, fields in entries:
        raw = (fields or {}).get(b"r")
        if raw is None:
            continue  # deleted while pending: nothing to store
        try:
            record = _parse(raw)
        except (ValueError, TypeError, InvalidOperation) as exc:
            log.error("poison call record %s (%s); moved to %s", entry_id, exc, DEAD_LETTERS)
            r.xadd(DEAD_LETTERS, {"r": raw, "error": str(exc)})
            result.poison += 1
            continue
        if record.request_id in records:
            result.duplicates += 1
        else:
            records[record.request_id] = record
            raws[record.request_id] = raw
    ordered = sorted(records.values(), key=lambda rec: rec.request_id)  # stable lock order
    calls = rollups.price_calls(ordered)
    result.skipped = len(ordered) - len(calls)
    if result.skipped:
        log.warning("skipped %d call records of deleted projects or environments",
                    result.skipped)  # fmt: skip
    failed = 0
    try:
        new = _store(calls)
    except (DataError, IntegrityError):
        log.warning("a batch of call records failed to store; retrying one by one")
        new, failed = _store_one_by_one(calls, raws, r)
    result.poison += failed
    result.inserted = len(new)
    result.duplicates += len(calls) - len(new) - failed
    result.cost_usd = sum((c.cost for c in new if c.cost), Decimal(0))
    result.projects = {c.record.project_id for c in new}
    hardlimit.add_flushed_to_live(new)
    _ack(r, [entry_id for entry_id, _ in entries])
    return result


def drain(batch_size: int = 1000, time_budget: float | None = None,
          consumer: str | None = None) -> FlushResult:  # fmt: skip
    """Replay the spool, then flush batches until the stream is empty or time is up."""
    total = FlushResult(replayed=replay_spool())
    deadline = None if time_budget is None else time.monotonic() + time_budget
    while True:
        result = flush_calls(batch_size, consumer)
        total.add(result)
        if result.read < batch_size or (deadline and time.monotonic() > deadline):
            return total
