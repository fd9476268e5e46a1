"""The embedded local runtime (Azurite, durabletask in-memory backend and worker, HTTP host, blob relay) and the CLI."""
