"""The HTTP API: `create_app()` builds the Flask app that gunicorn serves (`switchboard api`)."""

from app.ingress.app import create_app

__all__ = ["create_app"]
