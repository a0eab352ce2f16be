"""Settings for the example: Django keeps no database of its own; Switchboard's record is the store.

Switchboard is reached over its HTTP API: SWITCHBOARD_URL and an API key from
`switchboard keys create TENANT`, both from the environment.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
# Comma-separated, e.g. DJANGO_ALLOWED_HOSTS=tickets.example.com
_hosts = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
ALLOWED_HOSTS = [h.strip() for h in _hosts.split(",") if h.strip()]

SWITCHBOARD_URL = os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8080")
SWITCHBOARD_API_KEY = os.environ.get("SWITCHBOARD_API_KEY", "")

INSTALLED_APPS = ["tickets"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "project.urls"
# The views hand everything to Switchboard; Django itself needs no database.
DATABASES: dict[str, dict[str, str]] = {}
# Paths like /tickets and /tickets/<id> have no trailing slash; do not redirect POSTs to one.
APPEND_SLASH = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
