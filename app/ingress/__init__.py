"""Ingress: how requests come in: the in-cluster client, admission, tenants, callbacks and the HTTP API."""
