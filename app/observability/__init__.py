"""Observability: metrics, queue depths, logs, timings, traces, spend, reports and Flower."""
