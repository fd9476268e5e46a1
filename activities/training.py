"""submit_training, get_training_status, cancel_training: the training backend through its port."""

from __future__ import annotations

from shared.adapters import get_ports
from shared.run_store import read_uri


def submit_training(request: dict) -> dict:
    ports = get_ports()
    manifest = read_uri(ports.storage, request["manifest_uri"])
    job = {
        "job_id": f"{request['run_id']}",
        "source_id": request["source_id"],
        "instance_id": request.get("instance_id"),
        "spec": ports.spec.to_dict(),
        "manifest": {"uri": request["manifest_uri"], "blobs": manifest["blobs"]},
        "start": manifest.get("start"),
        "end": manifest.get("end"),
        "filters": manifest.get("filters") or {},
        "parent_champion": request.get("parent_champion"),
        "drift_summary": request.get("drift_summary"),
    }
    return {"job_id": ports.training.submit(job)}


def get_training_status(request: dict) -> dict:
    status = get_ports().training.status(request["job_id"])
    result = status.get("result") or {}
    summary = {"state": status["state"], "error": status.get("error"), "error_kind": status.get("error_kind")}
    if result:
        summary["result"] = {
            key: result.get(key)
            for key in (
                "model_version",
                "eval_uri",
                "eval_start",
                "eval_end",
                "eval_rows",
                "train_rows",
                "train_end",
                "metrics",
                "rejected_blobs",
                "problem_blobs",
            )
        }
        listed = result.get("rejected", [])
        summary["rejected"] = listed
        # Every problem file is marked on the blob itself; say so when the list here is not all of them.
        unlisted = (result.get("problem_blobs") or len(listed)) - len(listed)
        if unlisted > 0:
            summary["rejected_not_listed"] = f"{unlisted} more file(s) with problems: see their blob metadata (multiline_status)"
    summary["step_seconds"] = status.get("step_seconds")
    return summary


def cancel_training(request: dict) -> dict:
    get_ports().training.cancel(request["job_id"])
    return {"job_id": request["job_id"], "state": "canceled"}
