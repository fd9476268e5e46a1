"""The TrainingBackend port locally: each job runs `training.pipeline` in its own worker process.

At most `concurrency` jobs run at once; the rest wait in a queue (state "queued"). The job's own
process writes its status document, so the status survives this object; a job whose process died
without writing a final status is reported failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections import deque
from datetime import datetime, timezone

from shared import codec
from shared.ports import NotFound, Storage
from shared.settings import PROJECT_ROOT


class LocalTrainingBackend:
    def __init__(self, storage: Storage, jobs_container: str, concurrency: int, env: dict | None = None, log_dir=None):
        self.storage = storage
        self.log_dir = log_dir
        self.container = jobs_container
        self.concurrency = max(1, concurrency)
        self.env = env
        self._lock = threading.Lock()
        self._queue: deque[str] = deque()
        self._running: dict[str, subprocess.Popen] = {}
        self._canceled: set[str] = set()
        self._wake = threading.Event()
        self._stopped = False
        self._dispatcher = threading.Thread(target=self._dispatch, name="multiline-training", daemon=True)
        self._dispatcher.start()

    def submit(self, job: dict) -> str:
        job_id = job.get("job_id") or f"{job['source_id']}-{uuid.uuid4().hex[:12]}"
        try:
            self.storage.read(self.container, f"{job_id}/status.json")
            return job_id  # a retried submit: the job exists already (as on Azure ML)
        except NotFound:
            pass
        job = {**job, "job_id": job_id}
        self.storage.write(self.container, f"{job_id}/job.json", codec.to_bytes(job))
        self._write_status(job_id, {"state": "queued", "queued_at": datetime.now(timezone.utc).isoformat()})
        with self._lock:
            if job.get("priority"):  # a job many runs wait on (the fleet model) goes ahead of the queue
                self._queue.appendleft(job_id)
            else:
                self._queue.append(job_id)
        self._wake.set()
        return job_id

    def _write_status(self, job_id: str, status: dict) -> None:
        self.storage.write(self.container, f"{job_id}/status.json", codec.to_bytes(status))

    def status(self, job_id: str) -> dict:
        # Look at the process before reading its status document, so a job that finished in between
        # is read with its final document rather than reported lost.
        with self._lock:
            known = job_id in self._queue or job_id in self._running
            process = self._running.get(job_id)
        exit_code = process.poll() if process is not None else None
        try:
            status = codec.loads(self.storage.read(self.container, f"{job_id}/status.json")[0])
        except NotFound:
            raise NotFound(f"training job {job_id} is unknown") from None
        if status["state"] in ("queued", "running"):
            if not known:
                return {**status, "state": "failed", "error": "the training process ended without writing a result"}
            if exit_code is not None:
                return {**status, "state": "failed", "error": f"the training process exited with code {exit_code}"}
        return status

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._canceled.add(job_id)
            if job_id in self._queue:
                self._queue.remove(job_id)
            process = self._running.get(job_id)
        if process is not None:
            process.kill()
        self._write_status(job_id, {"state": "canceled", "ended_at": datetime.now(timezone.utc).isoformat()})

    def _dispatch(self) -> None:
        while not self._stopped:
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            with self._lock:
                for job_id, process in list(self._running.items()):
                    if process.poll() is not None:
                        del self._running[job_id]
                while self._queue and len(self._running) < self.concurrency:
                    job_id = self._queue.popleft()
                    self._running[job_id] = self._start(job_id)

    def _start(self, job_id: str) -> subprocess.Popen:
        env = dict(self.env if self.env is not None else os.environ)
        # One thread per job: `concurrency` jobs share the cores instead of oversubscribing them.
        env.setdefault("OMP_NUM_THREADS", "1")
        log = subprocess.DEVNULL
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)
            log = open(os.path.join(self.log_dir, f"{job_id}.log"), "ab")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "training.pipeline", "--job-id", job_id, "--parent-pid", str(os.getpid())],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()

    def close(self) -> None:
        self._stopped = True
        self._wake.set()
        with self._lock:
            for process in self._running.values():
                process.kill()
