"""compare_champion on real models in real Azurite: the candidates that face the champion, and what the run reports."""

from __future__ import annotations

import uuid

from shared.blob_registry import BlobModelRegistry
from shared.fleet_model import FLEET_SOURCE
from tests.conftest import months_from
from tests.test_training_contract import train_locally


def test_a_fleet_model_that_is_already_the_champion_is_not_its_own_challenger(storage, azurite, fast_spec, tmp_path, local_ports):
    """Once a source adopted the fleet model of a window, a later run for that window (a filtered retrain, say)
    must pit the source's own challenger against it, not report the champion against itself."""
    from activities.compare_champion import compare_champion
    from activities.promote import adopt_fleet_model

    source_id = f"cmp-{uuid.uuid4().hex[:8]}"
    challenger = train_locally(storage, azurite, fast_spec, tmp_path, source_id, "Gucheng", months_from(2015, 6, 3))
    registry = BlobModelRegistry(storage)
    record = registry.get(source_id, challenger)
    # A fleet model of the same window (its bytes stand in for one trained on every source).
    tags = {key: value for key, value in record.items() if key not in ("version", "sha256", "registered_at", "source_id")}
    fleet_version = registry.register(FLEET_SOURCE, registry.model_bytes(source_id, challenger), tags)
    adopted = adopt_fleet_model(registry, source_id, fleet_version, challenger, {"challenger_loss": 1.0})
    registry.set_champion(source_id, adopted, None, "adopted the fleet model")

    result = compare_champion({"source_id": source_id, "challenger_version": challenger, "fleet_version": fleet_version})

    fleet = next(candidate for candidate in result["candidates"] if candidate["candidate"] == "fleet")
    assert fleet["loss"] is None and fleet["note"] == f"already the champion (v{adopted})"
    assert result["challenger_candidate"] == "per_source" and result["challenger_version"] == challenger
    assert "champion already" in result["candidate_reason"]
    assert result["champion_version"] == adopted and result["decision"] == "keep"  # the same bytes: a tie
