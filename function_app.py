"""Azure Functions entry point (v2 programming model): glue only, every function one line into the domain.

This build registers the activities; the orchestrator adapter, the Event Grid and HTTP triggers and the
reconcile timer are wired in the Azure deployment work (see README, "Azure").
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

import activities

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


def _register_activity(function) -> None:
    # Decorated functions become builders, so the real activity stays callable in its own module.
    def activity(payload: dict) -> dict:
        return function(payload)

    activity.__name__ = function.__name__
    app.function_name(name=function.__name__)(app.activity_trigger(input_name="payload")(activity))


for _activity in activities.ALL:
    _register_activity(_activity)
