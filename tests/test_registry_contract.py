"""One contract, two registries: the blob registry (local) and the Azure ML registry (the real azure-ai-ml
SDK on an HTTP-level fake of the service), both storing model bytes in real Azurite blobs."""

from __future__ import annotations

import pytest

from shared.blob_registry import BlobModelRegistry, ChampionConflict

TAGS = {"train_end": "2016-12-01T00:00:00", "train_rows": 5000, "metrics": {"rmse": 12.5}, "filters": {}}


@pytest.fixture(params=["local", "azure"])
def registry(request, storage):
    if request.param == "local":
        return BlobModelRegistry(storage, "models")
    from azure.ai.ml import MLClient

    from shared.azure_registry import AzureMLModelRegistry
    from tests.azure.fake_azure import GROUP, SUBSCRIPTION, WORKSPACE, FakeAzure, FakeCredential
    from tests.azure.test_azure_registry import FakeModelStore

    fake = FakeAzure()
    FakeModelStore(fake)
    client = MLClient(
        FakeCredential(), SUBSCRIPTION, GROUP, WORKSPACE, transport=fake.transport(), show_progress=False, enable_telemetry=False
    )
    return AzureMLModelRegistry(client, storage, "artifacts", "multiline_artifacts")


def test_versions_tags_bytes_and_profiles(registry, source_id):
    assert registry.register(source_id, b"first", TAGS, profile={"rows": 10}) == 1
    assert registry.register(source_id, b"second", {**TAGS, "train_rows": 6000}) == 2
    assert [record["version"] for record in registry.versions(source_id)] == [1, 2]
    assert registry.get(source_id, 1)["metrics"] == {"rmse": 12.5}
    assert registry.get(source_id, 2)["train_rows"] == 6000
    assert registry.model_bytes(source_id, 2) == b"second"
    assert registry.profile(source_id, 1) == {"rows": 10}
    assert source_id in registry.sources()


def test_one_champion_moved_only_by_compare_and_swap_with_its_ledger(registry, source_id):
    for payload in (b"a", b"b", b"c"):
        registry.register(source_id, payload, TAGS)
    assert registry.champion(source_id) == (None, None)
    registry.set_champion(source_id, 1, None, "first valid model")
    with pytest.raises(ChampionConflict):
        registry.set_champion(source_id, 2, None, "believes there is none")
    version, token = registry.champion(source_id)
    registry.set_champion(source_id, 3, token, "better")
    with pytest.raises(ChampionConflict):
        registry.set_champion(source_id, 2, token, "stale token")
    assert registry.champion(source_id)[0] == 3
    ledger = registry.ledger(source_id)
    assert [entry["version"] for entry in ledger] == [1, 3]
    assert [entry["to"] for entry in ledger].count(None) == 1
    assert registry.record_image(source_id, 3, {"image": "edge:3", "digest": "sha256:x", "build_id": "b"})
    assert not registry.record_image(source_id, 1, {"image": "edge:1"})  # no longer reigns
    assert registry.ledger(source_id)[-1]["image"]["image"] == "edge:3"
