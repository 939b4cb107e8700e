from django.urls import path

from apps.monitoring import views

urlpatterns = [
    path("ops/", views.ops_page, name="ops"),
    path("ops/data", views.ops_data, name="ops-data"),
    path("ops/charts", views.ops_charts, name="ops-charts"),
    path("metrics", views.metrics, name="prometheus-django-metrics"),
]
