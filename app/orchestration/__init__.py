"""Orchestration: the Celery app, its queues, the router, the tasks and the specialist contract."""
