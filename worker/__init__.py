"""Celery workers: thin tasks that run jobs through `compression_core`."""
