"""Observability: metrics, logs, the request scope, timings, traces, reports and Flower."""
