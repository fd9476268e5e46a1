"""Step 4, register: store the evaluation rows and register the model with its tags and reference profile."""

from __future__ import annotations

import io

from shared.dataset import TIMESTAMP
from shared.drift import build_profile
from shared.modeling import Split
from shared.ports import Storage
from shared.source_data import rejected_only
from shared.spec import ModelSpec

PROBLEMS_LISTED = 25  # problem files listed in a job result and run record (every one is marked on its blob)


def register(
    registry,
    storage: Storage,
    artifacts_container: str,
    job: dict,
    spec: ModelSpec,
    split: Split,
    model_bytes: bytes,
    metrics: dict,
    rejected: list[dict],
) -> dict:
    source_id = job["source_id"]
    eval_uri = None
    if not split.evaluation.empty:
        # Raw columns plus the look-back rows, so that any model, whatever features it derives, can be scored.
        eval_name = f"{source_id}/evaluation/{job['job_id']}.parquet"
        buffer = io.BytesIO()
        columns = list(dict.fromkeys([TIMESTAMP, *spec.required_columns]))
        split.evaluation_with_context(columns).to_parquet(buffer, index=False)
        storage.write(artifacts_container, eval_name, buffer.getvalue())
        eval_uri = f"{artifacts_container}/{eval_name}"
    tags = {
        "spec": spec.name,
        "spec_doc": spec.to_dict(),
        "candidate": job.get("candidate", "per_source"),
        "constant_features": job.get("constant_features") or {},
        "job_id": job["job_id"],
        "instance_id": job.get("instance_id"),
        "data_start": job.get("start"),
        "data_end": job.get("end"),
        "filters": job.get("filters") or {},
        "train_start": split.train[TIMESTAMP].min().isoformat(),
        "train_end": split.train[TIMESTAMP].max().isoformat(),
        "train_rows": int(len(split.train)),
        "eval_start": split.eval_start.isoformat(),
        "eval_end": split.eval_end.isoformat(),
        "eval_rows": int(len(split.evaluation)),
        "eval_uri": eval_uri,
        "loss_name": spec.loss,
        "metrics": metrics,
        "blobs": len(job["manifest"]["blobs"]),
        "rejected_blobs": len(rejected_only(rejected)),
        "problem_blobs": len(rejected),  # rejected and used-with-warnings files; the result lists the first PROBLEMS_LISTED
        "parent_champion": job.get("parent_champion"),
        "drift": job.get("drift_summary"),
    }
    version = registry.register(source_id, model_bytes, tags, profile=build_profile(split.train, spec))
    return {**tags, "model_version": version}
