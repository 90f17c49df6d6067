"""The compression service: FastAPI routes over a small job service layer, backed by SQL and Celery.

No compression logic lives here: jobs call `compression_core.job.pipeline.compress_file` in the worker.
"""
