"""Settings only the Azure deployment reads (MULTILINE_MODE=azure), loaded the same way as `shared.settings`.

Kept apart from `shared/settings.py` so the local build does not carry Azure names; every key here is
set by `infra/` as an app setting and listed in `local.settings.sample.json` and docs/AZURE.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import _str


@dataclass(frozen=True)
class AzureSettings:
    subscription_id: str
    resource_group: str
    client_id: str
    ml_identity_client_id: str
    ml_workspace: str
    ml_compute: str
    ml_environment: str
    ml_code: str
    ml_experiment: str
    ml_jobs_datastore: str
    ml_artifacts_datastore: str
    ml_model_prefix: str
    acr_name: str
    image_os: str
    image_architecture: str
    app_insights_connection_string: str

    def require(self, *names: str) -> None:
        missing = [name for name in names if not getattr(self, name)]
        if missing:
            keys = ", ".join(SETTING_KEYS[name] for name in missing)
            raise ValueError(f"MULTILINE_MODE=azure needs the app settings {keys}; infra/main.bicep sets them")

    @property
    def training_client_id(self) -> str:
        """The identity the Azure ML steps run as: the training identity, else the app's own."""
        return self.ml_identity_client_id or self.client_id

    @property
    def acr_login_server(self) -> str:
        return f"{self.acr_name}.azurecr.io"


SETTING_KEYS = {
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "resource_group": "AZURE_RESOURCE_GROUP",
    "client_id": "AZURE_CLIENT_ID",
    "ml_identity_client_id": "MULTILINE_AML_IDENTITY_CLIENT_ID",
    "ml_workspace": "MULTILINE_AML_WORKSPACE",
    "ml_compute": "MULTILINE_AML_COMPUTE",
    "ml_environment": "MULTILINE_AML_ENVIRONMENT",
    "ml_code": "MULTILINE_AML_CODE",
    "ml_experiment": "MULTILINE_AML_EXPERIMENT",
    "ml_jobs_datastore": "MULTILINE_AML_JOBS_DATASTORE",
    "ml_artifacts_datastore": "MULTILINE_AML_ARTIFACTS_DATASTORE",
    "ml_model_prefix": "MULTILINE_AML_MODEL_PREFIX",
    "acr_name": "MULTILINE_ACR_NAME",
    "image_os": "MULTILINE_IMAGE_OS",
    "image_architecture": "MULTILINE_IMAGE_ARCHITECTURE",
    "app_insights_connection_string": "APPLICATIONINSIGHTS_CONNECTION_STRING",
}

DEFAULTS = {
    "ml_compute": "cpu-cluster",
    "ml_environment": "azureml:multiline-training@latest",
    "ml_experiment": "multiline",
    "ml_jobs_datastore": "multiline_jobs",
    "ml_artifacts_datastore": "multiline_artifacts",
    "ml_model_prefix": "multiline-",
    "image_os": "Linux",
    "image_architecture": "amd64",
}


def load_azure_settings() -> AzureSettings:
    return AzureSettings(**{name: _str(key, DEFAULTS.get(name, "")) for name, key in SETTING_KEYS.items()})
