"""A Django project that submits support tickets to Switchboard; see README.md."""
