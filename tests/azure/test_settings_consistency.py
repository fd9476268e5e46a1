"""Every setting the code reads is set by the infra and listed in the sample settings, and the reverse."""

from __future__ import annotations

import json
import re

from shared.azure_settings import SETTING_KEYS
from shared.settings import PROJECT_ROOT

# Set for the Functions host itself, not read by our code.
HOST_ONLY_SAMPLE = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
HOST_ONLY_INFRA = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}


def settings_read_by_code() -> set[str]:
    loader = (PROJECT_ROOT / "shared" / "settings.py").read_text()
    # Every typed reader of shared/settings.py, including `_choice` (MULTILINE_CANDIDATES was missed before).
    keys = set(re.findall(r'_(?:str|int|float|bool|choice)\(\s*"([A-Z0-9_]+)"', loader))
    keys |= set(SETTING_KEYS.values())
    # Binding expressions in function_app.py (%NAME%) are app settings the host resolves for us.
    keys |= set(re.findall(r"%([A-Z0-9_]+)%", (PROJECT_ROOT / "function_app.py").read_text()))
    return keys


def settings_in_sample() -> set[str]:
    return set(json.loads((PROJECT_ROOT / "local.settings.sample.json").read_text())["Values"]) - HOST_ONLY_SAMPLE


def settings_in_infra() -> set[str]:
    bicep = (PROJECT_ROOT / "infra" / "resources.bicep").read_text()
    return set(re.findall(r"\{ name: '([A-Za-z0-9_]+)', value:", bicep)) - HOST_ONLY_INFRA


def test_sample_settings_match_the_code():
    assert settings_in_sample() == settings_read_by_code()


def test_infra_sets_every_setting_the_code_reads():
    assert settings_in_infra() == settings_read_by_code()


# ---- value shapes: what infra sets parses, and names the right things -----------------------------------------


def infra_app_settings() -> dict[str, str]:
    """name -> value expression of every app setting in infra/resources.bicep (literals keep their quotes)."""
    bicep = (PROJECT_ROOT / "infra" / "resources.bicep").read_text()
    return dict(re.findall(r"\{ name: '([A-Za-z0-9_]+)', value: (.+?) \}\n", bicep))


def test_infra_values_point_at_the_right_resources():
    values = infra_app_settings()
    # A blob endpoint URL of the data account (BlobServiceClient(account_url)), not a name or the host account.
    assert values["MULTILINE_STORAGE_ACCOUNT_URL"] == "data.properties.primaryEndpoints.blob"
    # The registry NAME: the code derives the login server (`<name>.azurecr.io`) and calls ARM with the name.
    assert values["MULTILINE_ACR_NAME"] == "registry.name"
    assert values["MULTILINE_AML_WORKSPACE"] == "workspace.name"
    assert values["MULTILINE_AML_COMPUTE"] == "cluster.name"
    assert values["MULTILINE_AML_JOBS_DATASTORE"] == "jobsDatastore.name"
    assert values["MULTILINE_AML_ARTIFACTS_DATASTORE"] == "artifactsDatastore.name"
    # The client id (not the principal id or resource id) is what azure-identity takes from AZURE_CLIENT_ID.
    assert values["AZURE_CLIENT_ID"] == "identity.properties.clientId"
    assert values["MULTILINE_AML_IDENTITY_CLIENT_ID"] == "trainingIdentity.properties.clientId"
    assert values["MULTILINE_AML_ENVIRONMENT"] == "'azureml:${trainingEnvironment.name}:${trainingEnvironmentVersion.name}'"


def test_the_datastores_and_event_filter_use_the_codes_containers():
    from shared.settings import Containers

    bicep = (PROJECT_ROOT / "infra" / "resources.bicep").read_text()
    containers = Containers()

    def datastore_container(symbol: str) -> str:
        block = bicep[bicep.index(f"resource {symbol} ") :]
        return re.search(r"containerName: '([a-z0-9-]+)'", block).group(1)

    assert datastore_container("jobsDatastore") == containers.jobs
    assert datastore_container("artifactsDatastore") == containers.artifacts
    assert (
        "credentialsType: 'None'" in bicep[bicep.index("resource jobsDatastore ") : bicep.index("resource artifactsDatastore ")]
    )
    created = set(re.search(r"var dataContainers = \[([^\]]*)\]", bicep).group(1).replace("'", "").replace(",", " ").split())
    assert set(containers.all()) <= created
    raw = infra_app_settings()["MULTILINE_RAW_CONTAINER"].strip("'")
    assert f"subjectBeginsWith: '/blobServices/default/containers/{raw}/blobs/'" in bicep


def test_infra_literal_values_load(monkeypatch):
    """Every literal app setting passes the code's own loaders (integers, numbers, choices, paths)."""
    from shared.azure_settings import load_azure_settings
    from shared.settings import load_settings

    expressions = {
        "data.properties.primaryEndpoints.blob": "https://stdata0123456789abc.blob.core.windows.net/",
        "identity.properties.clientId": "11111111-1111-1111-1111-111111111111",
        "trainingIdentity.properties.clientId": "22222222-2222-2222-2222-222222222222",
        "subscription().subscriptionId": "00000000-0000-0000-0000-000000000000",
        "resourceGroup().name": "rg-multiline",
        "workspace.name": "mlw-0123456789abc",
        "cluster.name": "cpu-cluster",
        "jobsDatastore.name": "multiline_jobs",
        "artifactsDatastore.name": "multiline_artifacts",
        "registry.name": "cr0123456789abc",
        "'azureml:${trainingEnvironment.name}:${trainingEnvironmentVersion.name}'": "azureml:multiline-training:abc123def4567",
        "insights.properties.ConnectionString": "",  # telemetry is configured by function_app.py, not here
    }
    for name, value in infra_app_settings().items():
        if value.startswith("'") and "${" not in value:
            monkeypatch.setenv(name, value.strip("'"))
        elif value in expressions:
            monkeypatch.setenv(name, expressions[value])
        else:
            assert name in HOST_ONLY_INFRA, f"no sample for the infra expression of {name}: {value}"
    settings, azure = load_settings(), load_azure_settings()
    assert settings.mode == "azure" and not settings.is_local
    assert settings.spec_path.is_file()
    assert settings.state_dir.is_absolute() and str(settings.state_dir).startswith("/tmp/")
    assert azure.ml_jobs_datastore == "multiline_jobs" and azure.ml_artifacts_datastore == "multiline_artifacts"
    assert azure.acr_login_server == "cr0123456789abc.azurecr.io"
    azure.require("subscription_id", "resource_group", "client_id", "ml_workspace", "ml_compute", "ml_environment", "acr_name")
    # The steps run as the training identity, which is not the app's.
    assert azure.training_client_id == "22222222-2222-2222-2222-222222222222" != azure.client_id


# ---- role assignments: each identity holds what its code paths need, and nothing only the other needs ----------


def role_assignments() -> set[tuple[str, str, str]]:
    """(principal, scope, role) of every role assignment in infra/resources.bicep (loops expanded)."""
    bicep = (PROJECT_ROOT / "infra" / "resources.bicep").read_text()
    found = set()
    pattern = (
        r"resource \w+ 'Microsoft.Authorization/roleAssignments@[^']+' = (?:\[for role in \[([^\]]+)\]: |if \(.+?\) )?\{(.*?)\n\}"
    )
    for loop, body in re.findall(pattern, bicep, re.S):
        scope = re.search(r"\n  scope: (\w+)", body).group(1)
        principal = re.search(r"principalId: (\w+)", body).group(1)
        role = re.search(r"roleDefinitions', (?:roles\.)?(\w+)\)", body).group(1)
        for each in [r.strip().removeprefix("roles.") for r in loop.split(",")] if loop else [role]:
            found.add((principal, scope, each))
    return found


def test_the_app_and_training_identities_hold_least_roles():
    roles = role_assignments()
    app = {(scope, role) for principal, scope, role in roles if principal == "identity"}
    training = {(scope, role) for principal, scope, role in roles if principal == "trainingIdentity"}
    assert app == {
        ("data", "storageBlobDataContributor"),
        ("host", "storageBlobDataOwner"),
        ("host", "storageQueueDataContributor"),
        ("host", "storageTableDataContributor"),
        ("workspace", "azureMLDataScientist"),
        ("registry", "containerRegistryTasksContributor"),
        ("insights", "monitoringMetricsPublisher"),
    }
    assert training == {
        ("data", "storageBlobDataContributor"),
        ("workspace", "azureMLDataScientist"),
        ("registry", "acrPull"),
    }
    # The person running azd up can upload with --auth-mode login (shared keys are off).
    assert ("principalId", "data", "storageBlobDataContributor") in roles


def test_the_cluster_runs_as_the_training_identity():
    bicep = (PROJECT_ROOT / "infra" / "resources.bicep").read_text()
    cluster = re.search(r"resource cluster .*?\n\}", bicep, re.S).group(0)
    assert "userAssignedIdentities: { '${trainingIdentity.id}': {} }" in cluster
    function_app = re.search(r"resource functionApp .*?\n\}", bicep, re.S).group(0)
    assert "trainingIdentity.id" not in function_app
