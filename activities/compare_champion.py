"""compare_champion: champion and challenger scored on the same recent rows the challenger never trained on."""

from __future__ import annotations

import io

import pandas as pd

from shared.adapters import get_ports
from shared.champion import decide
from shared.modeling import score


def compare_champion(request: dict) -> dict:
    ports = get_ports()
    source_id, challenger_version = request["source_id"], int(request["challenger_version"])
    spec, registry = ports.spec, ports.registry
    challenger = registry.get(source_id, challenger_version)
    container, _, name = challenger["eval_uri"].partition("/")
    rows = pd.read_parquet(io.BytesIO(ports.storage.read(container, name)[0]))
    challenger_loss = score(registry.load_model(source_id, challenger_version), rows, spec)
    champion_version, champion_etag = registry.champion(source_id)
    champion_loss, champion_train_end = None, None
    if champion_version is not None:
        champion = registry.get(source_id, champion_version)
        champion_train_end = champion.get("train_end")
        champion_loss = score(registry.load_model(source_id, champion_version), rows, spec)
    comparison = decide(
        champion_version=champion_version,
        champion_train_end=champion_train_end,
        champion_loss=champion_loss,
        challenger_version=challenger_version,
        challenger_loss=challenger_loss,
        eval_start=challenger["eval_start"],
        eval_end=challenger["eval_end"],
        eval_rows=len(rows),
        min_rows=spec.eval_min_rows,
        margin=ports.settings.promotion_margin,
        loss_name=spec.loss,
    )
    return {**comparison.to_dict(), "champion_etag": champion_etag}
