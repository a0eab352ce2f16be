"""A Flask app that submits support tickets to Switchboard; see README.md."""
