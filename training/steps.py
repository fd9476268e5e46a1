"""The four training steps as separate commands: what the Azure ML pipeline's command components run.

    python -m training.steps filter     --job <job.json> --out <rows dir>
    python -m training.steps preprocess --job <job.json> --rows <rows dir> --out <split dir>
    python -m training.steps train      --job <job.json> --split <split dir> --out <model dir>
    python -m training.steps register   --job <job.json> --rows <rows dir> --split <split dir> --model <model dir>

Azure ML mounts the job document and passes each step's output folder to the next; blobs and the
registry are reached through the same ports as `training.pipeline` (which runs all four in one
process locally). The register step writes the job's result and status documents to the jobs
container, where the Function App's training adapter reads them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from shared import codec, redact
from shared.adapters import build_registry, build_storage
from shared.modeling import Split
from shared.settings import load_settings
from shared.spec import parse_spec
from training.filter import champion_categories, filter_data
from training.preprocess import NotEnoughData, preprocess
from training.register import PROBLEMS_LISTED, register
from training.train import serialize, train

log = logging.getLogger("multiline.training.steps")


def _write_status(storage, container: str, job_id: str, status: dict) -> None:
    status = {**status, "ended_at": datetime.now(timezone.utc).isoformat()}
    storage.write(container, f"{job_id}/status.json", codec.to_bytes(status))


def run_filter(job: dict, out: Path, storage, settings, registry) -> None:
    known = champion_categories(registry, job["source_id"])
    frame, rejected = filter_data(storage, settings.containers.raw, job, parse_spec(job["spec"]), known_categories=known)
    frame.to_parquet(out / "rows.parquet", index=False)
    (out / "rejected.json").write_text(codec.dumps(rejected))


def run_preprocess(job: dict, rows: Path, out: Path) -> None:
    split = preprocess(
        pd.read_parquet(rows / "rows.parquet"),
        parse_spec(job["spec"]),
        job["source_id"],
        hold_out=job.get("hold_out", True),
        rejected=json.loads((rows / "rejected.json").read_text()),
    )
    split.train.to_parquet(out / "train.parquet", index=False)
    # The index ties evaluation rows to their look-back context rows: keep it in both files.
    split.evaluation.to_parquet(out / "evaluation.parquet", index=True)
    if split.context is not None:
        split.context.to_parquet(out / "context.parquet", index=True)
    (out / "window.json").write_text(codec.dumps({"eval_start": split.eval_start, "eval_end": split.eval_end}))


def _read_split(folder: Path) -> Split:
    window = json.loads((folder / "window.json").read_text())
    return Split(
        train=pd.read_parquet(folder / "train.parquet"),
        evaluation=pd.read_parquet(folder / "evaluation.parquet"),
        eval_start=pd.Timestamp(window["eval_start"]),
        eval_end=pd.Timestamp(window["eval_end"]),
        context=pd.read_parquet(folder / "context.parquet") if (folder / "context.parquet").exists() else None,
    )


def run_train(job: dict, split_dir: Path, out: Path) -> None:
    split = _read_split(split_dir)
    model, metrics = train(split.train, split.evaluation, parse_spec(job["spec"]))
    (out / "model.joblib").write_bytes(serialize(model))
    (out / "metrics.json").write_text(codec.dumps(metrics))


def run_register(job: dict, rows: Path, split_dir: Path, model_dir: Path, storage, settings, registry) -> dict:
    rejected = json.loads((rows / "rejected.json").read_text())
    metrics = json.loads((model_dir / "metrics.json").read_text())
    result = register(
        registry,
        storage,
        settings.containers.artifacts,
        job,
        parse_spec(job["spec"]),
        _read_split(split_dir),
        (model_dir / "model.joblib").read_bytes(),
        metrics,
        rejected,
    )
    result["rejected"] = rejected[:PROBLEMS_LISTED]
    storage.write(settings.containers.jobs, f"{job['job_id']}/result.json", codec.to_bytes(result))
    _write_status(storage, settings.containers.jobs, job["job_id"], {"state": "succeeded", "result": result})
    return result


def main(argv: list[str] | None = None, storage=None, registry=None) -> int:
    """Run one step; `storage` and `registry` default to the ones the settings select (Azure ML passes none)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["filter", "preprocess", "train", "register"])
    parser.add_argument("--job", required=True, type=Path)
    parser.add_argument("--rows", type=Path)
    parser.add_argument("--split", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    redact.install()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    job = codec.loads(args.job.read_bytes())
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    storage = storage if storage is not None else build_storage(settings)
    registry = registry if registry is not None else build_registry(settings, storage)
    log.info("step %s of job %s for source %s", args.step, job["job_id"], job["source_id"])
    try:
        if args.step == "filter":
            run_filter(job, args.out, storage, settings, registry)
        elif args.step == "preprocess":
            run_preprocess(job, args.rows, args.out)
        elif args.step == "train":
            run_train(job, args.split, args.out)
        else:
            run_register(job, args.rows, args.split, args.model, storage, settings, registry)
    except NotEnoughData as exc:
        _write_status(
            storage,
            settings.containers.jobs,
            job["job_id"],
            {"state": "failed", "error": str(exc), "error_kind": "not_enough_data"},
        )
        log.error("job %s: %s", job["job_id"], exc)
        return 1
    except Exception as exc:  # the job's status must say which step failed and why
        log.exception("job %s: step %s failed", job["job_id"], args.step)
        _write_status(
            storage,
            settings.containers.jobs,
            job["job_id"],
            {"state": "failed", "error": f"step {args.step}: {type(exc).__name__}: {exc}", "error_kind": "error"},
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
