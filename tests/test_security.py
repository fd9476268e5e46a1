"""Security: no path traversal through a source id or blob name, models checked by digest, no secret in logs."""

from __future__ import annotations

import logging

import pytest

from shared import redact
from shared.blob_registry import BlobModelRegistry, ModelIntegrityError
from shared.events import EventHandler
from shared.settings import load_settings
from tests.test_events_property import RecordingOrchestrations

TRAVERSALS = ["..", "%2e%2e", "..%2Fmodels", "%2E%2E%2F%2E%2E", "a%2F..", "S/../T", "..\\..", "%252e%252e"]


def test_no_traversal_through_an_event_blob_name():
    orchestrations = RecordingOrchestrations()
    handler = EventHandler(load_settings(), orchestrations)
    events = [
        {
            "id": str(index),
            "eventType": "Microsoft.Storage.BlobCreated",
            "subject": "x",
            "data": {"api": "PutBlob", "url": f"http://127.0.0.1:1/devstoreaccount1/raw/{name}/2016/01/01/a.csv"},
        }
        for index, name in enumerate(TRAVERSALS)
    ]
    outcome = handler.handle(events)
    assert outcome.accepted == [] and orchestrations.calls == []
    assert {item["kind"] for item in outcome.ignored} == {"invalid_blob_name"}


def test_no_traversal_through_the_api(tmp_path):
    from shared.api import Api

    class Ports:
        settings = load_settings()

    api = Api(Ports(), RecordingOrchestrations())
    for name in TRAVERSALS:
        for method, path in (("GET", f"/api/sources/{name}"), ("POST", f"/api/sources/{name}/retrain")):
            response = api.handle(method, path, {}, b"{}")
            assert response.status in (400, 404), (path, response.status)


def test_a_tampered_model_is_refused_before_loading(storage, source_id):
    registry = BlobModelRegistry(storage, "models")
    version = registry.register(source_id, b"model bytes", {})
    storage.write("models", f"{source_id}/versions/{version:06d}/model.joblib", b"evil pickle")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        registry.load_model(source_id, version)


def test_no_secret_or_connection_string_is_logged(caplog, azurite):
    redact.install()
    secret = azurite.connection_string
    logger = logging.getLogger("multiline.test")
    with caplog.at_level(logging.INFO):
        logger.info("connecting with %s", secret)
        logger.warning("sas url https://a.blob.core.windows.net/raw/x?sv=2024&sig=abc%2Bdef&se=1")
        try:
            raise RuntimeError(f"failed: {secret}")
        except RuntimeError:
            logger.exception("boom")
    text = caplog.text
    assert "AccountKey=***" in text and "sig=***" in text
    assert "Eby8vdM02xNOcqFl" not in text and "abc%2Bdef" not in text
    assert redact.redact("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=s3cr3t") == (
        "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=***"
    )
