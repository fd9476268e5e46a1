"""Prediction logs: what the live model predicted at the edge, matched later with the targets.

Edge devices upload their scoring server's logs to the predictions container as
`<source_id>/<yyyy>/<mm>/<dd>/<name>.csv` with the columns `timestamp,model_version,prediction`
(timestamp: the reading's own time, ISO 8601). The champion's live loss is computed from these logs
wherever they cover the evaluation window, and cross-checked against re-scoring the same rows.
"""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pandas as pd

from edge.features import in_nanoseconds
from edge.score_server import LOG_COLUMNS
from shared.modeling import aggregate_loss, per_row_loss
from shared.ports import Storage
from shared.spec import ModelSpec

MIN_COVERAGE = 0.9


def read_logs(storage: Storage, container: str, source_id: str, since: pd.Timestamp) -> pd.DataFrame:
    frames = []
    earliest = (since - timedelta(days=31)).strftime("%Y/%m/%d")
    for blob in storage.list(container, f"{source_id}/"):
        parts = blob.name.split("/")
        if len(parts) != 5 or "/".join(parts[1:4]) < earliest:
            continue
        try:
            frame = pd.read_csv(io.BytesIO(storage.read(container, blob.name)[0]))
        except Exception:  # a broken log file only lowers coverage; it never blocks a decision
            continue
        if set(LOG_COLUMNS) <= set(frame.columns):
            frames.append(frame[list(LOG_COLUMNS)])
    if not frames:
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    logs = pd.concat(frames, ignore_index=True)
    logs["timestamp"] = in_nanoseconds(pd.to_datetime(logs["timestamp"], errors="coerce"))
    return logs.dropna(subset=["timestamp"])


def live_loss(
    logs: pd.DataFrame,
    champion_version: int,
    stamps: np.ndarray,
    targets: np.ndarray,
    rescored_row_losses: np.ndarray,
    spec: ModelSpec,
) -> dict:
    """Coverage of the window by the champion's logged predictions, its live loss there, and the
    difference from re-scoring the same rows (a large one means the edge runs something else)."""
    mine = logs.loc[logs["model_version"].astype(str) == str(champion_version)]
    mine = mine.drop_duplicates("timestamp", keep="last").set_index("timestamp")["prediction"]
    window = pd.Series(np.arange(len(stamps)), index=pd.DatetimeIndex(stamps))
    matched = window.index.isin(mine.index)
    coverage = float(matched.mean()) if len(stamps) else 0.0
    report = {"coverage": round(coverage, 4), "logged_rows": int(matched.sum()), "min_coverage": MIN_COVERAGE}
    if coverage < MIN_COVERAGE:
        report["note"] = "prediction logs do not cover the evaluation window; the decision uses re-scoring"
        return report
    positions = window.to_numpy()[matched]
    predictions = mine.reindex(window.index[matched]).to_numpy(dtype="float64")
    live = aggregate_loss(per_row_loss(targets[positions], predictions, spec), spec)
    rescored = aggregate_loss(rescored_row_losses[positions], spec)
    report.update(live_loss=live, rescored_loss=rescored, difference=live - rescored)
    return report
