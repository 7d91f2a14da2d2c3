"""dctoolkit: a lab's machines as one computer for batch jobs."""

from .celery import app as celery_app

__all__ = ["celery_app"]
