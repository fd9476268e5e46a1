"""Orchestrators: deterministic generator functions `(ctx, input)`, no I/O, no clock but the context's."""
