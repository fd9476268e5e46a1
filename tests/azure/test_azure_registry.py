"""The Azure ML model registry: versions, tags and the champion tag, through real azure-ai-ml requests."""

from __future__ import annotations

import re

import pytest

from shared.azure_registry import AzureMLModelRegistry, decode_tags, encode_tags
from shared.blob_registry import ChampionConflict
from shared.ports import NotFound
from tests.azure.fake_azure import WORKSPACE_PATH


class FakeModelStore:
    """Azure ML model containers and versions, as the REST API returns them."""

    def __init__(self, fake):
        self.versions: dict[str, dict[str, dict]] = {}
        fake.on("GET", r"/models\?", self.list_containers)
        fake.on("GET", r"/models/[^/]+/versions\?", self.list_versions)
        fake.on("GET", r"/models/[^/]+/versions/[^/?]+\?", self.get_version)
        fake.on("PUT", r"/models/[^/]+/versions/[^/?]+\?", self.put_version)

    @staticmethod
    def _names(call):
        match = re.search(r"/models/([^/]+)/versions(?:/([^/?]+))?", call.url)
        return match.group(1), match.group(2)

    def _resource(self, name, version, properties):
        return {
            "id": f"{WORKSPACE_PATH}/models/{name}/versions/{version}",
            "name": version,
            "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
            "properties": {"flavors": {}, "properties": {}, **properties},
        }

    def list_containers(self, call):
        return 200, {
            "value": [{"id": f"{WORKSPACE_PATH}/models/{name}", "name": name, "properties": {}} for name in self.versions]
        }

    def list_versions(self, call):
        name, _ = self._names(call)
        if name not in self.versions:
            return 404, {"error": {"code": "UserError", "message": f"model {name} not found"}}
        return 200, {"value": [self._resource(name, version, body) for version, body in self.versions[name].items()]}

    def get_version(self, call):
        name, version = self._names(call)
        body = self.versions.get(name, {}).get(version)
        if body is None:
            return 404, {"error": {"code": "UserError", "message": "not found"}}
        return 200, self._resource(name, version, body)

    def put_version(self, call):
        name, version = self._names(call)
        self.versions.setdefault(name, {})[version] = call.json()["properties"]
        return 200, self._resource(name, version, self.versions[name][version])


@pytest.fixture
def models(fake):
    return FakeModelStore(fake)


@pytest.fixture
def registry(ml_client, storage, models):
    return AzureMLModelRegistry(ml_client, storage, "artifacts", "multiline_artifacts")


TAGS = {"train_end": "2016-12-01T00:00:00", "train_rows": 5000, "metrics": {"rmse": 12.5}, "filters": {}, "drift": None}


def test_register_creates_a_version_pointing_at_the_artifacts_datastore(fake, registry, storage, models):
    assert registry.register("A", b"model-bytes", TAGS, profile={"TEMP": {"bins": [1, 2]}}) == 1
    assert registry.register("A", b"model-bytes-2", TAGS) == 2

    put = fake.matching("PUT", "/models/multiline-A/versions/1?")[0]
    properties = put.json()["properties"]
    assert properties["modelType"] == "custom_model"
    assert properties["modelUri"].endswith("/datastores/multiline_artifacts/paths/A/models/000001/")
    assert properties["tags"]["train_rows"] == "5000" and properties["tags"]["train_end"] == "2016-12-01T00:00:00"
    assert "drift" not in properties["tags"]
    assert storage.read("artifacts", "A/models/000001/model.joblib")[0] == b"model-bytes"
    assert registry.get("A", 1)["metrics"] == {"rmse": 12.5}
    assert registry.profile("A", 1) == {"TEMP": {"bins": [1, 2]}}
    assert registry.model_bytes("A", 2) == b"model-bytes-2"
    assert [record["version"] for record in registry.versions("A")] == [1, 2]
    assert registry.sources() == ["A"]


def test_champion_tag_moves_so_exactly_one_version_holds_it(registry, models):
    for _ in range(3):
        registry.register("A", b"m", TAGS)
    assert registry.champion("A") == (None, None)

    first = registry.set_champion("A", 1, None, "first model")
    version, token = registry.champion("A")
    assert (version, token) == (1, first)

    registry.set_champion("A", 3, token, "better rmse")
    holders = [v for v, body in models.versions["multiline-A"].items() if body["tags"].get("champion") == "true"]
    assert holders == ["3"]
    assert registry.champion("A")[0] == 3
    assert registry.champion_record("A")["reason"] == "better rmse"
    assert "champion" not in registry.get("A", 3)  # the champion tags are not model metadata
    ledger = registry.ledger("A")
    assert [(entry["version"], entry["to"] is None) for entry in ledger] == [(1, False), (3, True)]
    assert registry.record_image("A", 3, {"image": "cr.azurecr.io/edge-a:3", "digest": "sha256:1", "build_id": "A/000003"})
    assert registry.ledger("A")[-1]["image"]["digest"] == "sha256:1"
    assert not registry.record_image("A", 1, {"image": "old"})


def test_a_stale_token_moves_nothing(fake, registry):
    registry.register("A", b"m", TAGS)
    registry.register("A", b"m", TAGS)
    registry.set_champion("A", 1, None, "first")
    puts_before = len(fake.matching("PUT", "/models/"))
    with pytest.raises(ChampionConflict):
        registry.set_champion("A", 2, "v1@an-older-time", "too late")
    assert len(fake.matching("PUT", "/models/")) == puts_before
    assert registry.champion("A")[0] == 1


def test_unknown_versions_and_sources(registry):
    with pytest.raises(NotFound):
        registry.get("B", 1)
    assert registry.versions("B") == [] and registry.champion("B") == (None, None)


def test_tag_encoding_round_trips_non_strings():
    record = {"a": "text", "b": 3, "c": {"x": [1, 2]}, "d": None, "e": "5"}
    assert decode_tags(encode_tags(record)) == {"a": "text", "b": 3, "c": {"x": [1, 2]}, "e": "5"}
