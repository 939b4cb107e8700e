"""Without GDAL on the machine, Django's search for it is skipped: a start-up cost of every process.

The gap: django-mongodb-backend imports GeoDjango eagerly (its features, operations and schema
modules) and takes Django's ImproperlyConfigured as "no GIS". Without GDAL installed, Django's loader
(`django.contrib.gis.gdal.libgdal`) first tries 12 library names with `ctypes.util.find_library`, each
of which runs ldconfig, gcc and ld, and the backend's imports repeat the whole search: 36 searches,
about 100 subprocesses, in every web, worker, beat and command process before it can serve (measured:
1.3 s of a 8.8 s `import trading.asgi` on the loaded 2-core development machine). A restarted web or
worker process pays it again (docs/decisions/0006-process-supervision.md).

So: one search for GDAL (Django's own first name, which finds any installed libgdal through the
linker cache); when it finds nothing, the import of Django's loader fails at once with the same
ImproperlyConfigured it would raise after its 36 searches. The project sets no GDAL_LIBRARY_PATH and
uses no GIS. tests/trading/test_gdal.py pins the gap, so this can go when the backend stops importing
GeoDjango eagerly.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from ctypes.util import find_library
from importlib.machinery import ModuleSpec
from types import ModuleType

GDAL_LOADER = "django.contrib.gis.gdal.libgdal"


class GDALAbsent(importlib.abc.MetaPathFinder):
    """Fails the import of Django's GDAL loader as Django would, without its search."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == GDAL_LOADER:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured("Could not find the GDAL library (trading/gdal.py: not installed)")
        return None


def skip_search_when_absent() -> bool:
    """Install the shortcut when no GDAL is installed; True when it did."""
    if any(isinstance(finder, GDALAbsent) for finder in sys.meta_path) or find_library("gdal") is not None:
        return False
    sys.meta_path.insert(0, GDALAbsent())
    return True
