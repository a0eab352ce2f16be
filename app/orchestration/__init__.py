"""Orchestration: the Celery app, its queues, the router, the tasks, admission and tiers, callbacks,
people in the loop, and the specialist contract and registry."""
