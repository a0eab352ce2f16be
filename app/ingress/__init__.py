"""Ingress: how requests come in: the in-cluster client, the submit task, tenants and the HTTP API."""
