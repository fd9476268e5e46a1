"""The Azure SDK clients the Azure adapters share, built once per process with managed identity."""

from __future__ import annotations

import functools

from shared.azure_settings import AzureSettings, load_azure_settings


@functools.lru_cache(maxsize=1)
def azure_settings() -> AzureSettings:
    return load_azure_settings()


@functools.lru_cache(maxsize=1)
def credential():
    from azure.identity import DefaultAzureCredential

    # With a user-assigned identity, AZURE_CLIENT_ID (an app setting) tells azure-identity which one.
    return DefaultAzureCredential()


def ml_client(azure: AzureSettings):
    from azure.ai.ml import MLClient

    azure.require("subscription_id", "resource_group", "ml_workspace")
    return MLClient(credential(), azure.subscription_id, azure.resource_group, azure.ml_workspace, show_progress=False)


def acr_client(azure: AzureSettings):
    from azure.mgmt.containerregistry import ContainerRegistryManagementClient

    from shared.acr_builder import ACR_TASKS_API_VERSION

    azure.require("subscription_id", "resource_group", "acr_name")
    return ContainerRegistryManagementClient(credential(), azure.subscription_id, api_version=ACR_TASKS_API_VERSION)
