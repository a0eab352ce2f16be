"""Operational tooling."""
