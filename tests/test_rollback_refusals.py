"""Rollback refusals name what is wrong: an unknown source is not 'a source without that version'."""

from __future__ import annotations

import json

from shared.api import Api
from shared.blob_registry import BlobModelRegistry
from shared.settings import load_settings
from tests.test_events_property import RecordingOrchestrations


def test_rollback_of_an_unknown_source_says_so(storage, source_id):
    class Ports:
        settings = load_settings()
        registry = BlobModelRegistry(storage, "models")

    api = Api(Ports(), RecordingOrchestrations())
    unknown = api.handle("POST", f"/api/sources/{source_id}/rollback", {}, json.dumps({"version": 1}).encode())
    assert unknown.status == 404 and "has no models at all: unknown source" in unknown.body["error"]

    Ports.registry.register(source_id, b"model bytes", {})
    missing = api.handle("POST", f"/api/sources/{source_id}/rollback", {}, json.dumps({"version": 7}).encode())
    assert missing.status == 404 and missing.body["error"] == f"source {source_id!r} has no model version 7"
