"""Fixtures for the Azure adapters: settings from environment variables, the real SDK clients on a fake transport."""

from __future__ import annotations

import pytest

from tests.azure.fake_azure import GROUP, SUBSCRIPTION, WORKSPACE, FakeAzure, FakeCredential, MemoryStorage

AZURE_ENVIRONMENT = {
    "MULTILINE_MODE": "azure",
    "MULTILINE_STORAGE_ACCOUNT_URL": "https://stmultiline.blob.core.windows.net",
    "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
    "AZURE_RESOURCE_GROUP": GROUP,
    "AZURE_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
    "MULTILINE_AML_IDENTITY_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
    "MULTILINE_AML_WORKSPACE": WORKSPACE,
    "MULTILINE_AML_COMPUTE": "cpu-cluster",
    "MULTILINE_AML_ENVIRONMENT": "azureml:multiline-training:1",
    "MULTILINE_AML_CODE": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}/codes/multiline-training/versions/1",
    "MULTILINE_ACR_NAME": "crmultiline",
    "MULTILINE_BUILD_DEADLINE_SECONDS": "1800",
}


@pytest.fixture
def azure_env(monkeypatch):
    for key, value in AZURE_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    from shared.azure_settings import load_azure_settings
    from shared.settings import load_settings

    return load_settings(), load_azure_settings()


@pytest.fixture
def fake() -> FakeAzure:
    return FakeAzure()


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def ml_client(fake):
    from azure.ai.ml import MLClient

    return MLClient(
        FakeCredential(), SUBSCRIPTION, GROUP, WORKSPACE, transport=fake.transport(), show_progress=False, enable_telemetry=False
    )
