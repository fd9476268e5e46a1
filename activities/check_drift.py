"""check_drift: per-feature drift of the source's newest data against the champion's reference profile, and
the retraining policy's verdict (`train`, `policy_reason`) that the orchestration follows.

The full report goes to runs/<source>/drift/<run_id>.json; the activity returns only a summary.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from shared import codec
from shared.adapters import get_ports
from shared.blob_layout import parse_raw_blob_name
from shared.dataset import TIMESTAMP, apply_filters, parse_time
from shared.drift import DriftThresholds, retraining_decision, summarize, top_drifted
from shared.drift import check_drift as drift_against_profile
from shared.run_store import drift_name, read_uri
from shared.source_data import load_frames


def _age_days(registered_at: str | None, now: datetime) -> float | None:
    registered = parse_time(registered_at)  # naive UTC
    if registered is None:
        return None
    return (now.replace(tzinfo=None) - registered).total_seconds() / 86400


def _new_rows(ports, manifest_uri: str, since: datetime) -> pd.DataFrame:
    """What arrived after the champion's own evaluation window, within the run's range and filters."""
    settings, storage = ports.settings, ports.storage
    manifest = read_uri(storage, manifest_uri)
    earliest_day = since - timedelta(days=settings.blob_date_slack_days)
    names = [
        name
        for name in manifest["blobs"]
        if pd.Timestamp(parse_raw_blob_name(name, settings.source_id_pattern, settings.source_id_max_length).day) >= earliest_day
    ]
    frame, _ = load_frames(storage, settings.containers.raw, names, ports.spec, mark=False)
    if frame.empty:
        return frame
    frame = apply_filters(frame, parse_time(manifest.get("start")), parse_time(manifest.get("end")), manifest.get("filters"))
    return frame.loc[frame[TIMESTAMP] > pd.Timestamp(since)]


def check_drift(request: dict) -> dict:
    ports = get_ports()
    settings, storage = ports.settings, ports.storage
    source_id = request["source_id"]
    thresholds = DriftThresholds.from_settings(settings)
    champion_version, _ = ports.registry.champion(source_id)
    champion_age_days = None
    if champion_version is None:
        report = drift_against_profile(None, pd.DataFrame(), ports.spec, thresholds)
    else:
        champion = ports.registry.get(source_id, champion_version)
        since = parse_time(champion.get("eval_end")) or parse_time(champion.get("train_end"))
        frame = _new_rows(ports, request["manifest_uri"], since)
        report = drift_against_profile(ports.registry.profile(source_id, champion_version), frame, ports.spec, thresholds)
        report["champion_version"] = champion_version
        report["since"] = since.isoformat()
        champion_age_days = _age_days(champion.get("registered_at"), datetime.now(timezone.utc))
    decision = retraining_decision(
        settings.retrain_policy,
        manual=bool(request.get("manual")),
        champion_version=champion_version,
        report=report,
        champion_age_days=champion_age_days,
        max_age_days=settings.retrain_max_age_days,
    )
    report["policy"] = {
        "policy": settings.retrain_policy,
        "max_age_days": settings.retrain_max_age_days,
        "champion_age_days": champion_age_days,
        "manual": bool(request.get("manual")),
        "train": decision.train,
        "reason": decision.reason,
    }
    name = drift_name(source_id, request["run_id"])
    storage.write(settings.containers.runs, name, codec.to_bytes(report))
    schema = report.get("schema") or {}
    return {
        "status": report["status"],
        "summary": summarize(report),
        "drifted": report["drifted"][:5],
        "drifted_share": report["drifted_share"],
        "rows": report["rows"],
        "top": top_drifted(report),
        "schema_changes": {key: values[:5] for key, values in schema.items() if values},
        "train": decision.train,
        "policy_reason": decision.reason,
        "champion_version": champion_version,
        "report_uri": f"{settings.containers.runs}/{name}",
    }
