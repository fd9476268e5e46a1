"""record_run: the run record behind the fleet view and the audit trail."""

from __future__ import annotations

from shared import codec
from shared.adapters import get_ports
from shared.run_store import active_name, latest_name, run_name


def record_run(record: dict) -> dict:
    ports = get_ports()
    container = ports.settings.containers.runs
    source_id, run_id = record["source_id"], record["run_id"]
    data = codec.to_bytes(record)
    if record.get("outcome") == "running":  # the start of a run: kept apart until the run's own record exists
        ports.storage.write(container, active_name(source_id), data)
        return {"run_uri": f"{container}/{active_name(source_id)}"}
    ports.storage.write(container, run_name(source_id, run_id), data)
    ports.storage.write(container, latest_name(source_id), data)
    return {"run_uri": f"{container}/{run_name(source_id, run_id)}"}
