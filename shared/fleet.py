"""The fleet view: per source, the champion, the last run's decision and losses, drift, image, timing."""

from __future__ import annotations

from orchestrations.retrain import instance_id_for
from shared.blob_layout import BlobPathError, validate_source_id
from shared.run_store import latest_run


def _champion_loss(run: dict | None, champion_record: dict | None, loss_name: str) -> float | None:
    """The reigning champion's loss on the last run's evaluation rows (its own metric if there was no comparison)."""
    comparison = (run or {}).get("comparison") or {}
    if comparison and run.get("outcome") == "promoted":
        return comparison.get("challenger_loss")
    if comparison.get("champion_loss") is not None and run.get("champion_version") == comparison.get("champion_version"):
        return comparison.get("champion_loss")
    return ((champion_record or {}).get("metrics") or {}).get(loss_name)


def source_view(ports, orchestrations, source_id: str) -> dict:
    registry, storage, settings = ports.registry, ports.storage, ports.settings
    champion_version, _ = registry.champion(source_id)
    champion_record = registry.get(source_id, champion_version) if champion_version is not None else None
    run = latest_run(storage, settings.containers.runs, source_id)
    comparison = (run or {}).get("comparison") or {}
    image = ports.images.image_for(source_id, champion_version) if champion_version is not None else None
    orchestration = orchestrations.status(instance_id_for(source_id)) if orchestrations else None
    live_step = ((orchestration or {}).get("custom_status") or {}).get("step")
    training = (run or {}).get("training") or {}
    return {
        "source_id": source_id,
        "champion_version": champion_version,
        "champion_loss": _champion_loss(run, champion_record, ports.spec.loss),
        "loss": ports.spec.loss,
        "champion_train_end": (champion_record or {}).get("train_end"),
        # `per_source` (a version of this source) or `fleet` (a version of the shared fleet model, which is
        # registered as a new version of this source only if it wins): what challenger_version counts in.
        "challenger_candidate": comparison.get("challenger_candidate"),
        "challenger_version": comparison.get("challenger_version"),
        "challenger_loss": comparison.get("challenger_loss"),
        "decision": (run or {}).get("outcome"),
        "reason": comparison.get("reason") or (run or {}).get("error") or (run or {}).get("reason"),
        "drift": ((run or {}).get("drift") or {}).get("summary"),
        "image": (image or {}).get("image"),
        "image_digest": (image or {}).get("digest"),
        "last_run_id": (run or {}).get("run_id"),
        "last_run_seconds": (run or {}).get("duration_seconds"),
        "last_run_ended_at": (run or {}).get("ended_at"),
        # Files the last run could not use before training (empty, or a name outside the layout) and those
        # its training rejected or used with warnings (each is marked on its blob too, where it can be).
        "problem_files": [
            {"blob": item["blob"], "status": "rejected", "error": item.get("reason")}
            for item in ((run or {}).get("manifest") or {}).get("skipped") or []
        ]
        + [
            {key: item[key] for key in ("blob", "status", "error", "warning") if item.get(key)}
            for item in training.get("rejected") or []
        ],
        "problem_files_not_listed": training.get("rejected_not_listed"),
        # The engine may have forgotten a finished orchestration (the local in-memory one does on restart):
        # a source whose last run is recorded is then "done", not unknown.
        "step": live_step or ("done" if run and orchestration is None else None),
        "orchestration": {
            "instance_id": instance_id_for(source_id),
            "runtime_status": (orchestration or {}).get("runtime_status"),
            "step": live_step,
        },
    }


def known_sources(ports) -> list[str]:
    """Folders of the raw container that are valid source ids (the event handler ignores the others;
    owners starting with "_", the fleet model, are not sources)."""
    settings = ports.settings
    raw = ports.storage.list_prefixes(settings.containers.raw)

    def valid(source: str) -> bool:
        try:
            validate_source_id(source, settings.source_id_pattern, settings.source_id_max_length)
        except BlobPathError:
            return False
        return True

    return sorted(source for source in set(raw) | set(ports.registry.sources()) if valid(source))


def fleet_view(ports, orchestrations) -> list[dict]:
    return [source_view(ports, orchestrations, source_id) for source_id in known_sources(ports)]


COLUMNS = [
    ("source", "source_id"),
    ("champion", "champion_version"),
    ("champion loss", "champion_loss"),
    ("challenger loss", "challenger_loss"),
    ("decision", "decision"),
    ("drift", "drift"),
    ("image", "image"),
    ("run s", "last_run_seconds"),
    ("step", "step"),
]


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_table(rows: list[dict], columns=COLUMNS) -> str:
    cells = [[title for title, _ in columns]] + [[cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
