"""Runs the four training steps for one job document: what the local backend starts in a worker process.

    python -m training.pipeline --job-id <id> [--parent-pid <pid>]

The job document is read from the jobs container; the job's status document is written next to it
(running, then succeeded with the registered version or failed with the reason).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from datetime import datetime, timezone

from shared import codec, redact
from shared.adapters import build_registry, build_storage
from shared.settings import load_settings
from shared.spec import parse_spec
from training.filter import champion_categories, filter_data
from training.preprocess import NotEnoughData, preprocess
from training.register import PROBLEMS_LISTED, register
from training.train import serialize, train

log = logging.getLogger("multiline.training")


def job_blob(job_id: str, leaf: str) -> str:
    return f"{job_id}/{leaf}"


def write_status(storage, container: str, job_id: str, status: dict) -> None:
    storage.write(container, job_blob(job_id, "status.json"), codec.to_bytes(status))


def run_job(job_id: str) -> dict:
    settings = load_settings()
    storage = build_storage(settings)
    registry = build_registry(settings, storage)
    containers = settings.containers
    job = codec.loads(storage.read(containers.jobs, job_blob(job_id, "job.json"))[0])
    started = datetime.now(timezone.utc).isoformat()
    write_status(storage, containers.jobs, job_id, {"state": "running", "started_at": started, "pid": os.getpid()})
    steps: dict[str, float] = {}
    try:
        spec = parse_spec(job["spec"])
        clock = time.perf_counter()
        known = champion_categories(registry, job["source_id"])
        frame, rejected = filter_data(storage, containers.raw, job, spec, known_categories=known)
        steps["filter"] = time.perf_counter() - clock
        clock = time.perf_counter()
        split = preprocess(frame, spec, job["source_id"], hold_out=job.get("hold_out", True), rejected=rejected)
        steps["preprocess"] = time.perf_counter() - clock
        clock = time.perf_counter()
        model, metrics = train(split.train, split.evaluation, spec)
        steps["train"] = time.perf_counter() - clock
        clock = time.perf_counter()
        result = register(registry, storage, containers.artifacts, job, spec, split, serialize(model), metrics, rejected)
        steps["register"] = time.perf_counter() - clock
        result["rejected"] = rejected[:PROBLEMS_LISTED]
        status = {"state": "succeeded", "result": result}
    except NotEnoughData as exc:
        status = {"state": "failed", "error": str(exc), "error_kind": "not_enough_data"}
    except Exception as exc:  # the job's status must say what went wrong, whatever it was
        log.exception("training job %s failed", job_id)
        status = {"state": "failed", "error": f"{type(exc).__name__}: {exc}", "error_kind": "error"}
    status.update(started_at=started, ended_at=datetime.now(timezone.utc).isoformat(), step_seconds=steps)
    write_status(storage, containers.jobs, job_id, status)
    return status


def exit_when_orphaned(parent_pid: int, interval: float = 1.0) -> threading.Thread:
    """Ends this process once `parent_pid` is no longer its parent: a local stack killed hard (no chance
    to stop its jobs) must not leave them retrying its dead storage. A reconcile asks for the run again."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        log.warning("the local stack that started this job (pid %s) is gone: stopping", parent_pid)
        logging.shutdown()
        os._exit(3)

    thread = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--parent-pid", type=int, help="stop when this process is gone (the local backend's)")
    args = parser.parse_args(argv)
    redact.install()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.parent_pid:
        exit_when_orphaned(args.parent_pid)
    status = run_job(args.job_id)
    return 0 if status["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
