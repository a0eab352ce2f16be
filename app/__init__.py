"""Switchboard: a production engine for AI-agent work on Celery."""
