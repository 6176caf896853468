"""The gateway's own durable record of the job on the machine (an LMDB beside the WAL).

The job is written and synced here before the machine is told to start, so a gateway that
dies between start and done finds, on restart, which job number to look for on the
machine and which held inputs it consumes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lmdb

_JOB = b"job"
_NEXT = b"next_job"


@dataclass(frozen=True)
class PendingJob:
    job: int
    input_ids: tuple[str, ...]


class JobStore:
    def __init__(self, data_dir: str | Path) -> None:
        path = Path(data_dir) / "gateway"
        path.mkdir(parents=True, exist_ok=True)
        # sync=True (the default): a put returns once on disk, which is the point
        self._env = lmdb.open(str(path), map_size=1 << 20, max_dbs=0, subdir=True)

    def pending(self) -> PendingJob | None:
        with self._env.begin() as txn:
            raw = txn.get(_JOB)
        if raw is None:
            return None
        rec = json.loads(raw)
        return PendingJob(int(rec["job"]), tuple(rec["input_ids"]))

    def begin(self, input_ids: tuple[str, ...]) -> PendingJob:
        """Allocate the next job number and record it with ``input_ids``, durably."""
        with self._env.begin(write=True) as txn:
            if txn.get(_JOB) is not None:
                raise RuntimeError("a job is already pending")
            job = int(txn.get(_NEXT) or b"1")
            txn.put(_NEXT, str(job + 1).encode())
            txn.put(_JOB, json.dumps({"job": job, "input_ids": list(input_ids)}).encode())
        return PendingJob(job, input_ids)

    def forget(self) -> None:
        with self._env.begin(write=True) as txn:
            txn.delete(_JOB)

    def close(self) -> None:
        self._env.close()
