"""Sinks: write results out (vector store first, then events through the outbox)."""
