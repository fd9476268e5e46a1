"""check_drift: per-feature PSI of the source's newest data against the champion's reference profile."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from shared import codec
from shared.adapters import get_ports
from shared.blob_layout import parse_raw_blob_name
from shared.dataset import TIMESTAMP, apply_filters, parse_time
from shared.drift import check_drift as drift_against_profile
from shared.drift import summarize
from shared.run_store import drift_name, read_uri
from shared.source_data import load_frames


def check_drift(request: dict) -> dict:
    ports = get_ports()
    settings, storage = ports.settings, ports.storage
    source_id = request["source_id"]
    champion_version, _ = ports.registry.champion(source_id)
    if champion_version is None:
        report = drift_against_profile(None, pd.DataFrame(), ports.spec, settings.drift_psi_threshold, settings.drift_share)
    else:
        champion = ports.registry.get(source_id, champion_version)
        # New data: what arrived after the champion's own evaluation window.
        since = parse_time(champion.get("eval_end")) or parse_time(champion.get("train_end"))
        manifest = read_uri(storage, request["manifest_uri"])
        earliest_day = since - timedelta(days=settings.blob_date_slack_days)
        names = [
            name
            for name in manifest["blobs"]
            if pd.Timestamp(parse_raw_blob_name(name, settings.source_id_pattern, settings.source_id_max_length).day)
            >= earliest_day
        ]
        frame, _ = load_frames(storage, settings.containers.raw, names, ports.spec, mark=False)
        if not frame.empty:
            frame = apply_filters(
                frame, parse_time(manifest.get("start")), parse_time(manifest.get("end")), manifest.get("filters")
            )
            frame = frame.loc[frame[TIMESTAMP] > pd.Timestamp(since)]
        report = drift_against_profile(
            ports.registry.profile(source_id, champion_version),
            frame,
            ports.spec,
            settings.drift_psi_threshold,
            settings.drift_share,
        )
        report["champion_version"] = champion_version
        report["since"] = since.isoformat()
    name = drift_name(source_id, request["run_id"])
    storage.write(settings.containers.runs, name, codec.to_bytes(report))
    return {
        "status": report["status"],
        "summary": summarize(report),
        "drifted": report["drifted"][:5],
        "drifted_share": report["drifted_share"],
        "rows": report["rows"],
        "report_uri": f"{settings.containers.runs}/{name}",
    }
