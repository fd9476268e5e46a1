"""promote: move the source's champion pointer to the winning candidate, only if it is still what was compared.

A winning fleet model is first registered under the source (with the source as its constant input and
the source's own reference profile), so every champion is a version of its own source.
"""

from __future__ import annotations

from shared.adapters import get_ports
from shared.blob_registry import ChampionConflict
from shared.fleet_model import FLEET_SOURCE, SOURCE_COLUMN


def adopt_fleet_model(registry, source_id: str, fleet_version: int, source_challenger_version: int, comparison: dict) -> int:
    fleet = registry.get(FLEET_SOURCE, fleet_version)
    own = registry.get(source_id, source_challenger_version)
    tags = {key: value for key, value in fleet.items() if key not in ("version", "sha256", "registered_at", "source_id")}
    tags.update(
        candidate="fleet",
        fleet_version=fleet_version,
        constant_features={SOURCE_COLUMN: source_id},
        eval_start=own["eval_start"],
        eval_end=own["eval_end"],
        eval_rows=own["eval_rows"],
        eval_uri=own["eval_uri"],
        metrics={**fleet.get("metrics", {}), fleet.get("loss_name", "rmse"): comparison["challenger_loss"]},
    )
    return registry.register(
        source_id,
        registry.model_bytes(FLEET_SOURCE, fleet_version),
        tags,
        profile=registry.profile(source_id, source_challenger_version),
    )


def promote(request: dict) -> dict:
    registry = get_ports().registry
    source_id, version = request["source_id"], int(request["version"])
    reason = request.get("reason", "")
    expected_etag = request.get("expected_etag")
    if expected_etag == "current":  # a rollback: whatever reigns now (the source's run is the only writer)
        _, expected_etag = registry.champion(source_id)
    if request.get("candidate") == "fleet":
        version = adopt_fleet_model(registry, source_id, version, int(request["source_challenger_version"]), request)
    try:
        registry.set_champion(source_id, version, expected_etag, reason, kind=request.get("kind", "promote"))
    except ChampionConflict as exc:
        current, _ = registry.champion(source_id)
        return {"promoted": False, "champion_version": current, "reason": str(exc)}
    return {"promoted": True, "champion_version": version, "reason": reason, "candidate": request.get("candidate", "per_source")}
