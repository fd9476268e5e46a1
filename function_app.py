"""Azure Functions entry point (v2 programming model): glue only, every function one line into the domain.

- `retrain_source`: the durabletask-native orchestrator, run on Durable Functions 1.x through
  `orchestrations.df_adapter` (the only place that knows both engines);
- one activity trigger per activity in `activities.ALL`, under the activity's own name;
- `blob_created`: Event Grid `BlobCreated` (Event Grid schema or CloudEvents) -> start or signal;
- the HTTP API of the local host (`shared.api`), auth level FUNCTION, with the local `GET /` fleet page at
  `GET /api/fleet` (Functions routes live under /api) and `GET /api/events` (this worker's event counters);
- `reconcile_sources`: a timer that starts a run for every source whose data is newer than its last run.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

import activities
from orchestrations.df_adapter import durable_functions_orchestrator
from orchestrations.retrain import retrain_source
from shared import redact
from shared.azure_settings import load_azure_settings
from shared.functions_host import FunctionsHost, run_activity
from shared.telemetry import configure_telemetry

redact.install()  # no connection string or SAS token reaches a log record
configure_telemetry(load_azure_settings().app_insights_connection_string)

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
host = FunctionsHost()

app.function_name(name="retrain_source")(
    app.orchestration_trigger(context_name="context")(durable_functions_orchestrator(retrain_source))
)


def _register_activity(function) -> None:
    # Decorated functions become builders, so the real activity stays callable in its own module.
    def activity(payload: dict) -> dict:
        return run_activity(function, payload)

    activity.__name__ = function.__name__
    app.function_name(name=function.__name__)(app.activity_trigger(input_name="payload")(activity))


for _activity in activities.ALL:
    _register_activity(_activity)


@app.function_name(name="blob_created")
@app.event_grid_trigger(arg_name="event")
@app.durable_client_input(client_name="client")
async def blob_created(event: func.EventGridEvent, client) -> None:
    await host.event(event, client)


@app.function_name(name="retrain")
@app.route(route="sources/{source}/retrain", methods=["POST"])
@app.durable_client_input(client_name="client")
async def retrain(req: func.HttpRequest, client) -> func.HttpResponse:
    return await host.http(req, client)


@app.function_name(name="list_sources")
@app.route(route="sources", methods=["GET"])
@app.durable_client_input(client_name="client")
async def list_sources(req: func.HttpRequest, client) -> func.HttpResponse:
    return await host.http(req, client)


@app.function_name(name="get_source")
@app.route(route="sources/{source}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def get_source(req: func.HttpRequest, client) -> func.HttpResponse:
    return await host.http(req, client)


@app.function_name(name="rollback")
@app.route(route="sources/{source}/rollback", methods=["POST"])
@app.durable_client_input(client_name="client")
async def rollback(req: func.HttpRequest, client) -> func.HttpResponse:
    return await host.http(req, client)


@app.function_name(name="get_ledger")
@app.route(route="sources/{source}/ledger", methods=["GET"])
@app.durable_client_input(client_name="client")
async def get_ledger(req: func.HttpRequest, client) -> func.HttpResponse:
    return await host.http(req, client)


@app.function_name(name="get_run")
@app.route(route="runs/{instance}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def get_run(req: func.HttpRequest, client) -> func.HttpResponse:
    return await host.http(req, client)


@app.function_name(name="fleet_page")
@app.route(route="fleet", methods=["GET"])
@app.durable_client_input(client_name="client")
async def fleet_page(req: func.HttpRequest, client) -> func.HttpResponse:
    return await host.fleet_page(req, client)


@app.function_name(name="event_counters")
@app.route(route="events", methods=["GET"])
@app.durable_client_input(client_name="client")
async def event_counters(req: func.HttpRequest, client) -> func.HttpResponse:
    return await host.event_counters(client)


@app.function_name(name="reconcile_sources")
@app.timer_trigger(schedule="%MULTILINE_RECONCILE_SCHEDULE%", arg_name="timer", run_on_startup=False)
@app.durable_client_input(client_name="client")
async def reconcile_sources(timer: func.TimerRequest, client) -> None:
    await host.reconcile(client)
