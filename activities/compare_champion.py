"""compare_champion: the candidates and the champion scored on the same recent rows no candidate trained on.

Candidates: the source's own challenger and, when enabled, the newest fleet model whose training cut-off
lies before the window. The better candidate faces the champion; the decision rules live in
shared/champion.py. Where the edge's prediction logs cover the window, the champion's live loss is
reported beside its re-scored loss.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

import numpy as np
import pandas as pd

from shared.adapters import get_ports
from shared.champion import choose_candidate, decide, paired_bootstrap
from shared.fleet_model import FLEET_SOURCE
from shared.modeling import CONTEXT, aggregate_loss, score_rows
from shared.prediction_log import live_loss, read_logs
from shared.spec import spec_of_model

_MODELS: OrderedDict[str, object] = OrderedDict()  # sha256 -> loaded model, the few most recently used
_MODELS_LOCK = threading.Lock()
_MODELS_KEPT = 4


def _model(registry, owner: str, version: int, record: dict):
    """The registered model, loaded once per content: every source's comparison in a round scores the same
    fleet model, and a model's bytes never change under its digest (checked when they were loaded)."""
    digest = record.get("sha256")
    with _MODELS_LOCK:
        if digest in _MODELS:
            _MODELS.move_to_end(digest)
            return _MODELS[digest]
    model = registry.load_model(owner, version)
    if digest:
        with _MODELS_LOCK:
            _MODELS[digest] = model
            while len(_MODELS) > _MODELS_KEPT:
                _MODELS.popitem(last=False)
    return model


def _row_losses(registry, owner: str, version: int, rows: pd.DataFrame, default_spec, constants: dict | None, record=None):
    record = record or registry.get(owner, version)
    spec = spec_of_model(record, default_spec)
    model = _model(registry, owner, version, record)
    losses, stamps = score_rows(model, rows, spec, constants or record.get("constant_features"))
    return record, losses, stamps


def compare_champion(request: dict) -> dict:
    ports = get_ports()
    source_id, challenger_version = request["source_id"], int(request["challenger_version"])
    spec, registry, settings = ports.spec, ports.registry, ports.settings
    challenger = registry.get(source_id, challenger_version)
    container, _, name = challenger["eval_uri"].partition("/")
    rows = pd.read_parquet(io.BytesIO(ports.storage.read(container, name)[0]))
    eval_start, eval_end = challenger["eval_start"], challenger["eval_end"]

    _, own_losses, stamps = _row_losses(registry, source_id, challenger_version, rows, spec, None)
    candidates = [{"candidate": "per_source", "version": challenger_version, "loss": aggregate_loss(own_losses, spec)}]
    champion_version, champion_etag = registry.champion(source_id)
    champion_record = registry.get(source_id, champion_version) if champion_version is not None else {}
    fleet_losses = None
    fleet_version = request.get("fleet_version")
    if fleet_version is not None:
        fleet_record = registry.get(FLEET_SOURCE, int(fleet_version))
        if champion_record.get("candidate") == "fleet" and str(champion_record.get("fleet_version")) == str(fleet_version):
            # The champion is this very fleet model: as a candidate it could only tie with itself, and the
            # report would show the champion against itself instead of the source's own challenger.
            candidates.append(
                {
                    "candidate": "fleet",
                    "version": int(fleet_version),
                    "loss": None,
                    "note": f"already the champion (v{champion_version})",
                }
            )
        elif pd.Timestamp(fleet_record["train_end"]) <= pd.Timestamp(eval_start):
            _, fleet_losses, _ = _row_losses(
                registry, FLEET_SOURCE, int(fleet_version), rows, spec, {"_source": source_id}, fleet_record
            )
            candidates.append({"candidate": "fleet", "version": int(fleet_version), "loss": aggregate_loss(fleet_losses, spec)})
        else:
            candidates.append(
                {
                    "candidate": "fleet",
                    "version": int(fleet_version),
                    "loss": None,
                    "note": f"not fair here: trained on rows up to {fleet_record['train_end']}",
                }
            )
    chosen, why = choose_candidate(
        own_losses,
        fleet_losses,
        block_rows=settings.bootstrap_block_rows,
        resamples=settings.bootstrap_resamples,
        confidence=settings.bootstrap_confidence,
    )
    if any(candidate.get("note", "").startswith("already the champion") for candidate in candidates):
        why = "the fleet model of this window is the champion already: the source's own model faces it"
    best = next(candidate for candidate in candidates if candidate["candidate"] == chosen)
    best_losses = fleet_losses if chosen == "fleet" else own_losses

    champion_loss, champion_train_end, test, live = None, None, None, None
    if champion_version is not None:
        _, champion_losses, _ = _row_losses(registry, source_id, champion_version, rows, spec, None, champion_record)
        champion_train_end = champion_record.get("train_end")
        champion_loss = aggregate_loss(champion_losses, spec)
        test = paired_bootstrap(
            champion_losses,
            best_losses,
            block_rows=settings.bootstrap_block_rows,
            resamples=settings.bootstrap_resamples,
            confidence=settings.bootstrap_confidence,
        )
        logs = read_logs(ports.storage, settings.containers.predictions, source_id, pd.Timestamp(eval_start))
        evaluation = rows.loc[~rows[CONTEXT].astype(bool)] if CONTEXT in rows.columns else rows
        live = live_loss(logs, champion_version, stamps, evaluation[spec.target].to_numpy(np.float64), champion_losses, spec)
    comparison = decide(
        champion_version=champion_version,
        champion_train_end=champion_train_end,
        champion_loss=champion_loss,
        challenger_version=best["version"],
        challenger_loss=best["loss"],
        eval_start=eval_start,
        eval_end=eval_end,
        eval_rows=len(own_losses),
        min_rows=spec.eval_min_rows,
        margin=settings.promotion_margin,
        loss_name=spec.loss,
        paired_test=test,
    )
    return {
        **comparison.to_dict(),
        "challenger_candidate": best["candidate"],
        "candidate_reason": why,
        "source_challenger_version": challenger_version,
        "candidates": candidates,
        "champion_etag": champion_etag,
        "live": live,
    }
