from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView

from clinical.auth import ThrottledAuthenticationForm
from clinical.views import plotly_js
from monitoring import access, health

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="clinical:ecg-list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("ecgs/", include("clinical.urls")),
    path("api/v1/", include("clinical.api.urls")),
    path("monitoring/", include("monitoring.urls")),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("vendor/plotly.min.js", plotly_js, name="plotly-js"),
    # Browsers ask for /favicon.ico whatever the page links; lazy: the hashed name is known once static files are.
    path("favicon.ico", RedirectView.as_view(url=lazy(static, str)("favicon.svg"), permanent=True)),
    # django_prometheus's view, for monitoring users, allowed addresses and the metrics token only.
    path("metrics", access.metrics, name="prometheus-django-metrics"),
    path("admin/", admin.site.urls),
]
# Under /api/ every error is the API's JSON shape, also those raised before or outside a DRF view.
handler400 = "clinical.api.errors.bad_request"
handler403 = "clinical.api.errors.permission_denied"
handler404 = "clinical.api.errors.page_not_found"
handler500 = "clinical.api.errors.server_error"
