# Before anything loads the database backend: it would search for GDAL (trading/gdal.py).
from trading.gdal import skip_search_when_absent

skip_search_when_absent()

# Load the Celery app with Django so @shared_task binds to it (Celery's Django recipe).
from trading.celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
