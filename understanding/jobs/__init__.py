"""Asynchronous jobs: ids, idempotency, states, progress, retries, dead letters."""
