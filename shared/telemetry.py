"""Telemetry for the Azure Portal: Azure Monitor (OpenTelemetry) when App Insights is configured.

`configure_telemetry` is a no-op without APPLICATIONINSIGHTS_CONNECTION_STRING, so the local build and
the tests export nothing; `activity_span` always opens a span (a no-op one without an exporter) that
carries the source id, run id and orchestration instance id of the step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace

log = logging.getLogger("multiline.telemetry")
_configured = False


def configure_telemetry(connection_string: str) -> bool:
    """Send traces, logs and metrics to Application Insights; returns whether it was configured."""
    global _configured
    if _configured or not connection_string:
        return _configured
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=connection_string, logger_name="multiline")
    _configured = True
    log.info("Azure Monitor telemetry configured")
    return True


def span_attributes(step: str, payload: object, instance_id: str | None) -> dict:
    payload = payload if isinstance(payload, dict) else {}
    attributes = {
        "multiline.step": step,
        "multiline.source_id": payload.get("source_id"),
        "multiline.run_id": payload.get("run_id"),
        "multiline.instance_id": instance_id or payload.get("instance_id"),
        "multiline.job_id": payload.get("job_id"),
        "multiline.build_id": payload.get("build_id"),
    }
    return {key: str(value) for key, value in attributes.items() if value is not None}


@contextmanager
def activity_span(step: str, payload: object, instance_id: str | None) -> Iterator[trace.Span]:
    attributes = span_attributes(step, payload, instance_id)
    tracer = trace.get_tracer("multiline")
    with tracer.start_as_current_span(f"activity {step}", attributes=attributes) as span:
        log.info(
            "activity %s source=%s instance=%s",
            step,
            attributes.get("multiline.source_id"),
            attributes.get("multiline.instance_id"),
            extra={"source_id": attributes.get("multiline.source_id"), "instance_id": attributes.get("multiline.instance_id")},
        )
        yield span
