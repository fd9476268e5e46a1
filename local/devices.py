"""Simulated edge devices: before a month's readings are uploaded, the device's champion has already
scored them live with the edge scoring server's code, and the device uploads its prediction log."""

from __future__ import annotations

import io

import pandas as pd

from edge.score_server import LOG_COLUMNS, Scorer
from shared.image_context import model_card
from shared.modeling import one_openmp_thread
from shared.spec import spec_of_model


def log_live_predictions(ports, source_id: str, month: str, rows_csv: bytes, previous_csv: bytes | None) -> str | None:
    """Score `rows_csv` as the source's champion would have at the edge; upload the log. Returns the blob name."""
    registry = ports.registry
    version, _ = registry.champion(source_id)
    if version is None:
        return None
    record = registry.get(source_id, version)
    spec = spec_of_model(record, ports.spec)
    scorer = Scorer(registry.load_model(source_id, version), model_card(source_id, version, record, spec))
    read = lambda data: pd.read_csv(io.BytesIO(data), na_values=spec.na_values, keep_default_na=True)  # noqa: E731
    with one_openmp_thread():  # a device scores on its own; here eight share the host's cores
        if previous_csv:
            scorer.predict(read(previous_csv).tail(scorer.memory_rows))  # the device's memory of the last hours
        predictions, stamps = scorer.predict(read(rows_csv))
    log = pd.DataFrame({LOG_COLUMNS[0]: stamps, LOG_COLUMNS[1]: version, LOG_COLUMNS[2]: predictions})
    year, mm = month.split("-")
    name = f"{source_id}/{year}/{mm}/01/predictions-{month}.csv"
    ports.storage.write(ports.settings.containers.predictions, name, log.to_csv(index=False).encode())
    return name
