"""promote: move the source's champion pointer to the challenger, only if it is still what was compared."""

from __future__ import annotations

from shared.adapters import get_ports
from shared.blob_registry import ChampionConflict


def promote(request: dict) -> dict:
    registry = get_ports().registry
    source_id, version = request["source_id"], int(request["version"])
    try:
        registry.set_champion(source_id, version, request.get("expected_etag"), request.get("reason", ""))
    except ChampionConflict as exc:
        current, _ = registry.champion(source_id)
        return {"promoted": False, "champion_version": current, "reason": str(exc)}
    return {"promoted": True, "champion_version": version, "reason": request.get("reason", "")}
