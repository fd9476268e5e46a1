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
    keys = set(re.findall(r'_(?:str|int|float|bool)\(\s*"([A-Z0-9_]+)"', loader))
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
