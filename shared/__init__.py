"""Multiline's domain: settings, blob layout, model spec, data, drift, champion rules, ports and adapters."""
