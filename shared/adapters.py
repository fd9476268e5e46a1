"""Configuration, not code, selects the world: builds the adapters behind each port from the settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from shared.settings import Settings, load_settings
from shared.spec import ModelSpec, load_spec


class NotConfigured(RuntimeError):
    pass


def build_storage(settings: Settings):
    from shared.blob_storage import BlobStorage

    containers = settings.containers.all()
    if settings.storage_connection_string:
        return BlobStorage.from_connection_string(settings.storage_connection_string, containers)
    if settings.storage_account_url:
        return BlobStorage.from_account_url(settings.storage_account_url, containers)
    raise NotConfigured(
        "no storage configured: set MULTILINE_STORAGE_ACCOUNT_URL (Azure, managed identity) or "
        "MULTILINE_STORAGE_CONNECTION_STRING (Azurite); `multiline serve` sets it for you"
    )


def _azure_not_built(port: str) -> NotConfigured:
    return NotConfigured(
        f"MULTILINE_MODE=azure: the Azure {port} adapter is not part of this build yet; run with MULTILINE_MODE=local"
    )


def build_registry(settings: Settings, storage):
    if settings.mode == "azure":
        from shared.azure_clients import azure_settings, ml_client
        from shared.azure_registry import AzureMLModelRegistry

        azure = azure_settings()
        return AzureMLModelRegistry(
            ml_client(azure), storage, settings.containers.artifacts, azure.ml_artifacts_datastore, azure.ml_model_prefix
        )
    from shared.blob_registry import BlobModelRegistry

    return BlobModelRegistry(storage, settings.containers.models)


def build_training_backend(settings: Settings, storage):
    if settings.mode == "azure":
        from shared.azure_clients import azure_settings, ml_client
        from shared.azure_training import AzureMLTrainingBackend

        azure = azure_settings()
        azure.require("ml_compute", "ml_environment", "ml_jobs_datastore")
        return AzureMLTrainingBackend(ml_client(azure), storage, settings, azure)
    from shared.local_training import LocalTrainingBackend

    return LocalTrainingBackend(
        storage, settings.containers.jobs, settings.training_concurrency, log_dir=settings.state_dir / "logs" / "jobs"
    )


def build_image_builder(settings: Settings, storage, registry, spec: ModelSpec):
    if settings.mode == "azure":
        from shared.acr_builder import AcrImageBuilder
        from shared.azure_clients import acr_client, azure_settings

        azure = azure_settings()
        return AcrImageBuilder(acr_client(azure), storage, registry, spec, settings, azure)
    from shared.local_image_builder import LocalImageBuilder

    return LocalImageBuilder(storage, registry, spec, settings.containers.images)


@dataclass
class Ports:
    settings: Settings
    spec: ModelSpec
    storage: object
    registry: object
    training: object
    images: object

    def close(self) -> None:
        close = getattr(self.training, "close", None)
        if close:
            close()


_ports: Ports | None = None
_lock = threading.Lock()


def get_ports() -> Ports:
    """The process's adapters, built once from the settings (activities share them)."""
    global _ports
    with _lock:
        if _ports is None:
            settings = load_settings()
            spec = load_spec(settings.spec_path)
            storage = build_storage(settings)
            registry = build_registry(settings, storage)
            _ports = Ports(
                settings=settings,
                spec=spec,
                storage=storage,
                registry=registry,
                training=build_training_backend(settings, storage),
                images=build_image_builder(settings, storage, registry, spec),
            )
        return _ports


def reset_ports() -> None:
    """Forget the process's adapters (the local host calls this when it stops)."""
    global _ports
    with _lock:
        if _ports is not None:
            _ports.close()
        _ports = None
