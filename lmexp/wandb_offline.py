"""Read an offline W&B run (``wandb/offline-run-*/run-<id>.wandb``) back into Python.

wandb 0.31 ships no Python reader for these files: reading and writing them lives in the Go
``wandb-core`` binary, and the old ``wandb.sdk.internal.datastore`` module is gone. So we read the
format ourselves. A ``.wandb`` file is a LevelDB-style log of ``wandb_internal_pb2.Record``
protobufs:

- a 7-byte file header: ``b":W&B"``, the little-endian uint16 0xBEE1, version byte 0;
- then 32 KiB blocks (the file header counts towards the first), each holding chunks with a
  7-byte header: CRC-32 (uint32), payload length (uint16), chunk type (uint8). The CRC is the
  standard zlib CRC-32 of the type byte followed by the payload. A record that does not fit in
  the rest of a block is split into FIRST, MIDDLE..., LAST chunks; one that fits is one FULL chunk;
- a block tail too short for a chunk header is zero padding.

A record cut off by the end of the file (the writer crashed or is still running) is dropped, as
LevelDB's own log reader does; any other damage raises ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2 as pb

_FILE_HEADER = struct.Struct("<4sHB")
_FILE_HEADER_VALUE = (b":W&B", 0xBEE1, 0)
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK_SIZE = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4

# wandb's own bookkeeping (telemetry, runtime) that it stores alongside the user's keys.
_INTERNAL_KEY = "_wandb"


@dataclass
class OfflineRun:
    path: Path  # the offline-run-* directory
    run_id: str
    project: str | None
    group: str | None
    name: str | None  # display name
    job_type: str | None
    tags: list[str]
    config: dict  # the run's config, values decoded from JSON
    history: list[dict] = field(default_factory=list)  # one dict per logged step
    summary: dict = field(default_factory=dict)  # final summary values
    exit_code: int | None = None  # None if the run never finished (no exit record)


def find_offline_runs(root: str | Path) -> list[Path]:
    """All ``offline-run-*`` directories below ``root``, sorted."""
    return sorted(p for p in Path(root).rglob("offline-run-*") if p.is_dir())


def read_offline_run(path: str | Path) -> OfflineRun:
    """Read a run from its ``offline-run-*`` directory or its ``.wandb`` file."""
    wandb_file = _wandb_file(Path(path))
    run: OfflineRun | None = None
    for record in _records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            # wandb writes the run record again, in full, whenever e.g. the name or tags change.
            metadata = _run_metadata(record.run)
            run = OfflineRun(wandb_file.parent, config={}, **metadata) if run is None else replace(run, **metadata)
            _apply(run.config, record.run.config.update, record.run.config.remove)
        elif run is None:
            continue  # only the header comes before the run record
        elif kind == "config":
            _apply(run.config, record.config.update, record.config.remove)
        elif kind == "history":
            step: dict = {}
            _apply(step, record.history.item)
            run.history.append(step)
        elif kind == "summary":
            _apply(run.summary, record.summary.update, record.summary.remove)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    if run is None:
        raise ValueError(f"{wandb_file}: no run record (the writer stopped before flushing one?)")
    run.config.pop(_INTERNAL_KEY, None)
    run.summary.pop(_INTERNAL_KEY, None)
    return run


def wait_until_written(path: str | Path, timeout: float = 30.0) -> None:
    """Return once the run's writer has flushed it whole (its exit record is in): W&B's `finish()`
    can return a moment before its writer process has written the file's last records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if read_offline_run(path).exit_code is not None:
                return
        except ValueError:  # no run record yet
            pass
        time.sleep(0.1)
    read_offline_run(path)  # still incomplete: without a run record, say so


def _wandb_file(path: Path) -> Path:
    if path.suffix == ".wandb":
        return path
    candidates = sorted(path.glob("run-*.wandb"))
    if len(candidates) != 1:
        raise ValueError(f"{path}: expected exactly one run-*.wandb file, found {len(candidates)}")
    return candidates[0]


def _run_metadata(run: pb.RunRecord) -> dict:
    return {
        "run_id": run.run_id,
        # Unset proto3 strings read as "": report them as missing.
        "project": run.project or None,
        "group": run.run_group or None,
        "name": run.display_name or None,
        "job_type": run.job_type or None,
        "tags": list(run.tags),
    }


def _apply(target: dict, updates, removes=()) -> None:
    """Apply wandb key/value items to a nested dict.

    An item names its key either as ``key`` or as a ``nested_key`` path; wandb uses a one-element
    path for keys that contain "/" (``["val/loss"]``) and longer paths for nested dicts.
    """
    for item in updates:
        *parents, last = _key_path(item)
        node = target
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = json.loads(item.value_json)
    for item in removes:
        *parents, last = _key_path(item)
        node = target
        for key in parents:
            node = node.get(key, {})
        node.pop(last, None)


def _key_path(item) -> list[str]:
    return [item.key] if item.key else list(item.nested_key)


def _records(path: Path) -> Iterator[pb.Record]:
    data = path.read_bytes()
    if len(data) < _FILE_HEADER.size or _FILE_HEADER.unpack_from(data) != _FILE_HEADER_VALUE:
        raise ValueError(f"{path}: not a W&B transaction log (bad file header {data[:_FILE_HEADER.size]!r})")

    pos = _FILE_HEADER.size
    pending: list[bytes] | None = None  # chunks of a record split across blocks
    while pos < len(data):
        room = _BLOCK_SIZE - pos % _BLOCK_SIZE
        if room < _CHUNK_HEADER.size:
            pos += room  # zero padding at the end of a block
            continue
        payload_start = pos + _CHUNK_HEADER.size
        if payload_start > len(data):
            return  # truncated chunk header at the end of the file
        crc, length, chunk_type = _CHUNK_HEADER.unpack_from(data, pos)
        if _CHUNK_HEADER.size + length > room:
            raise ValueError(f"{path}: the chunk at byte {pos} claims to run past the end of its block")
        payload = data[payload_start : payload_start + length]
        if len(payload) < length:
            return  # truncated payload at the end of the file
        if zlib.crc32(payload, zlib.crc32(bytes([chunk_type]))) != crc:
            raise ValueError(f"{path}: checksum mismatch in the chunk at byte {pos}")

        if chunk_type in (_FULL, _FIRST) and pending is not None:
            raise ValueError(f"{path}: a new record starts at byte {pos} before the previous one ended")
        if chunk_type in (_MIDDLE, _LAST) and pending is None:
            raise ValueError(f"{path}: a record continues at byte {pos} without having started")
        if chunk_type == _FULL:
            yield _parse(path, pos, payload)
        elif chunk_type == _FIRST:
            pending = [payload]
        elif chunk_type == _MIDDLE:
            pending.append(payload)
        elif chunk_type == _LAST:
            yield _parse(path, pos, b"".join([*pending, payload]))
            pending = None
        else:
            raise ValueError(f"{path}: unknown chunk type {chunk_type} at byte {pos}")
        pos = payload_start + length
    # A FIRST/MIDDLE run still pending here is a record cut off by the end of the file: dropped.


def _parse(path: Path, pos: int, payload: bytes) -> pb.Record:
    try:
        return pb.Record.FromString(payload)
    except DecodeError as error:
        raise ValueError(f"{path}: undecodable record ending at byte {pos}: {error}") from error
