"""Ticket endpoints backed by Switchboard's HTTP API (`switchboard-client`); no models, no database."""
