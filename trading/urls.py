from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from apps.core import views as core_views
from apps.dashboard import views as dashboard_views
from apps.portfolio import views as portfolio_views
from trading.api import api

urlpatterns = [
    path("", dashboard_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("verify/<str:code>", portfolio_views.invoice_verify_page, name="invoice-verify"),
    path("api/v1/", api.urls),
    path("", include("apps.monitoring.urls")),  # /ops/ and /metrics (every process' metrics)
]
# A database timeout raised outside any view (in a middleware) is a 503 to retry, not a 500.
handler500 = "apps.monitoring.views.server_error"

if settings.BENCH_BASELINE_ENDPOINT:  # bench/api_load.py's floor; off unless the bench turns it on
    from trading.baseline import baseline_api

    urlpatterns.append(path("bench/", baseline_api.urls))
