"""trading/gdal.py: without GDAL installed, no process searches for it (a start-up cost, ADR 0006)."""

from __future__ import annotations

import subprocess
import sys
from ctypes.util import find_library

import pytest

from tests.conftest import BASE_DIR

COUNT_SEARCHES = """
import ctypes.util, sys
searches = []
search = ctypes.util.find_library
ctypes.util.find_library = lambda name: searches.append(name) or search(name)
{imports}
import django_mongodb_backend.features as features
print(len(searches), features.GISFeatures.__module__)
"""


def searches_and_gis(imports: str) -> tuple[int, str]:
    """How many library searches importing the backend's features took, and where its GISFeatures came from."""
    code = COUNT_SEARCHES.format(imports=imports)
    output = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, check=True)
    count, module = output.stdout.split()
    return int(count), module


@pytest.fixture(scope="module", autouse=True)
def gdal_absent() -> None:
    if find_library("gdal") is not None:
        pytest.skip("GDAL is installed on this machine: Django finds it at once and nothing is skipped")


def test_without_the_shortcut_the_backend_s_import_searches_for_gdal_under_12_names() -> None:
    """Pins the gap: when this fails, the backend no longer imports GeoDjango eagerly; trading/gdal.py can go.
    (Its operations and schema modules repeat the search: 36 in all per process.)"""
    searches, gis = searches_and_gis("")
    assert searches >= 12 and gis == "django_mongodb_backend.features"  # the fallback: no GIS


def test_with_the_project_loaded_the_backend_falls_back_to_no_gis_after_one_search() -> None:
    searches, gis = searches_and_gis("import trading")
    assert searches == 1 and gis == "django_mongodb_backend.features"  # trading/gdal.py's own, then none
