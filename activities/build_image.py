"""build_image, get_build_status: the edge image of the source's champion, through the ImageBuilder port."""

from __future__ import annotations

from shared.adapters import get_ports


def build_image(request: dict) -> dict:
    images = get_ports().images
    source_id, version = request["source_id"], int(request["version"])
    existing = images.image_for(source_id, version)
    if existing:  # idempotent: a replayed or repeated request reuses the image already built
        return {"build_id": existing["build_id"], "existing": True}
    return {"build_id": images.start_build(source_id, version, request.get("eval_uri")), "existing": False}


def get_build_status(request: dict) -> dict:
    ports = get_ports()
    status = ports.images.status(request["build_id"])
    if status.get("state") == "succeeded" and request.get("source_id"):
        # The ledger notes which image carries this reign's champion.
        ports.registry.record_image(request["source_id"], int(request["version"]), status)
    return {key: status.get(key) for key in ("build_id", "state", "image", "digest", "context_uri", "error")}
