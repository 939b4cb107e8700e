"""The settings by concern; trading/settings.py gathers them (DJANGO_SETTINGS_MODULE=trading.settings)."""
