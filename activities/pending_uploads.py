"""pending_uploads: blobs of the source that arrived after its manifest was listed (they need a follow-up run)."""

from __future__ import annotations

from datetime import datetime

from shared.adapters import get_ports
from shared.run_store import read_uri


def pending_uploads(request: dict) -> dict:
    ports = get_ports()
    manifest = read_uri(ports.storage, request["manifest_uri"])
    known = set(manifest["blobs"]) | {item["blob"] for item in manifest.get("skipped", [])}
    newest = manifest.get("newest_modified")
    watermark = datetime.fromisoformat(newest) if newest else None
    # Strictly newer than anything listed: blobs outside a manual run's date range are not "pending".
    pending = [
        blob.name
        for blob in ports.storage.list(ports.settings.containers.raw, f"{request['source_id']}/")
        if blob.name not in known and (watermark is None or blob.last_modified > watermark)
    ]
    return {"pending": len(pending), "examples": pending[:5]}
