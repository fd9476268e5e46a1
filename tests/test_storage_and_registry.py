"""Storage and the blob model registry on Azurite: ETag conditions, version numbers, one champion."""

import threading

import pytest

from shared.blob_registry import BlobModelRegistry, ChampionConflict, ModelIntegrityError
from shared.ports import NotFound, PreconditionFailed


def test_etag_conditions_hold_on_azurite(storage, source_id):
    name = f"{source_id}/doc.json"
    first = storage.write("runs", name, b"1", if_none_match="*")
    with pytest.raises(PreconditionFailed):
        storage.write("runs", name, b"2", if_none_match="*")
    second = storage.write("runs", name, b"2", if_match=first)
    with pytest.raises(PreconditionFailed):
        storage.write("runs", name, b"3", if_match=first)
    assert storage.read("runs", name) == (b"2", second)
    with pytest.raises(NotFound):
        storage.read("runs", f"{source_id}/missing.json")


def test_versions_are_numbered_without_gaps_under_concurrent_registration(storage, source_id):
    registry = BlobModelRegistry(storage)
    versions = []
    threads = [
        threading.Thread(target=lambda i=i: versions.append(registry.register(source_id, f"model-{i}".encode(), {"i": i})))
        for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    assert [record["version"] for record in registry.versions(source_id)] == [1, 2, 3, 4, 5, 6]


def test_champion_pointer_moves_only_by_compare_and_swap(storage, source_id):
    registry = BlobModelRegistry(storage)
    one = registry.register(source_id, b"a", {})
    two = registry.register(source_id, b"b", {})
    three = registry.register(source_id, b"c", {})
    assert registry.champion(source_id) == (None, None)
    registry.set_champion(source_id, one, None, "first")
    with pytest.raises(ChampionConflict):
        registry.set_champion(source_id, two, None, "thinks there is no champion")
    _, etag = registry.champion(source_id)
    results = []

    def race(version):
        try:
            registry.set_champion(source_id, version, etag, "race")
            results.append(version)
        except ChampionConflict:
            results.append("conflict")

    threads = [threading.Thread(target=race, args=(version,)) for version in (two, three)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [result for result in results if result != "conflict"]
    assert len(winners) == 1 and results.count("conflict") == 1
    assert registry.champion(source_id)[0] == winners[0]
    assert registry.champion_record(source_id)["previous_version"] == one


def test_a_tampered_model_is_refused(storage, source_id):
    registry = BlobModelRegistry(storage)
    version = registry.register(source_id, b"genuine bytes", {})
    storage.write("models", f"{source_id}/versions/{version:06d}/model.joblib", b"swapped bytes")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        registry.model_bytes(source_id, version)
