"""The portal's URLs as settings.py makes them with DCT_OIDC_ISSUER set (urls.py reads it once, at import)."""

from django.urls import include, path

from dctoolkit.urls import urlpatterns as portal

urlpatterns = [*portal, path("oidc/", include("mozilla_django_oidc.urls"))]
