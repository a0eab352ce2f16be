"""Ticket endpoints backed by Switchboard (`app.client`); no models, no database of Django's own."""
