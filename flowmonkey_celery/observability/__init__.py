"""Operators\x27 signals: Prometheus metrics, OpenTelemetry traces, structured logs."""
