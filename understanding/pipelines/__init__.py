"""Pipelines: plain functions of decoded media to domain results (no sinks, no I/O)."""
