"""The Storage port on azure-storage-blob: Azurite locally (connection string), Azure with managed identity."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from shared.ports import BlobInfo, NotFound, PreconditionFailed


class BlobStorage:
    def __init__(self, service: BlobServiceClient, containers: list[str] | None = None):
        self.service = service
        for container in containers or []:
            self.ensure_container(container)

    @classmethod
    def from_connection_string(cls, connection_string: str, containers: list[str] | None = None) -> BlobStorage:
        return cls(BlobServiceClient.from_connection_string(connection_string), containers)

    @classmethod
    def from_account_url(cls, account_url: str, containers: list[str] | None = None) -> BlobStorage:
        from azure.identity import DefaultAzureCredential

        return cls(BlobServiceClient(account_url, credential=DefaultAzureCredential()), containers)

    def ensure_container(self, container: str) -> None:
        try:
            self.service.create_container(container)
        except ResourceExistsError:
            pass

    def _blob(self, container: str, name: str):
        return self.service.get_blob_client(container, name)

    def read(self, container: str, name: str) -> tuple[bytes, str]:
        try:
            downloader = self._blob(container, name).download_blob()
            return downloader.readall(), downloader.properties.etag
        except ResourceNotFoundError as exc:
            raise NotFound(f"{container}/{name}") from exc

    def write(self, container, name, data, *, if_match=None, if_none_match=None, metadata=None) -> str:
        kwargs: dict = {"overwrite": True, "metadata": metadata}
        if if_match:
            kwargs.update(etag=if_match, match_condition=MatchConditions.IfNotModified)
        elif if_none_match == "*":
            kwargs["overwrite"] = False
        try:
            result = self._blob(container, name).upload_blob(data, **kwargs)
        except (ResourceModifiedError, ResourceExistsError) as exc:
            raise PreconditionFailed(f"{container}/{name} changed (condition {if_match or if_none_match})") from exc
        except ResourceNotFoundError as exc:
            raise PreconditionFailed(f"{container}/{name} no longer exists") from exc
        return result["etag"]

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        for blob in self.service.get_container_client(container).list_blobs(
            name_starts_with=prefix or None, include=["metadata"]
        ):
            yield BlobInfo(blob.name, blob.size, blob.etag, blob.last_modified, dict(blob.metadata or {}), blob.creation_time)

    def info(self, container: str, name: str) -> BlobInfo:
        try:
            props = self._blob(container, name).get_blob_properties()
        except ResourceNotFoundError as exc:
            raise NotFound(f"{container}/{name}") from exc
        return BlobInfo(name, props.size, props.etag, props.last_modified, dict(props.metadata or {}), props.creation_time)

    def set_metadata(self, container: str, name: str, metadata: dict, drop: Iterable[str] = ()) -> None:
        blob = self._blob(container, name)
        try:
            current = dict(blob.get_blob_properties().metadata or {})
            current.update(metadata)
            for key in drop:
                current.pop(key, None)
            blob.set_blob_metadata(current)
        except ResourceNotFoundError as exc:
            raise NotFound(f"{container}/{name}") from exc

    def list_prefixes(self, container: str) -> list[str]:
        client = self.service.get_container_client(container)
        return sorted(item.name.rstrip("/") for item in client.walk_blobs(delimiter="/") if item.name.endswith("/"))
