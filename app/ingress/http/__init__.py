"""The HTTP API: `create_app()` builds the Flask app; uvicorn serves `asgi.create_asgi()`."""

from app.ingress.http.app import create_app

__all__ = ["create_app"]
