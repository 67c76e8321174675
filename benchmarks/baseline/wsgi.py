"""The event benchmark's baseline: recsite's settings, middleware and DRF set-up, served by
gunicorn exactly like recsite.wsgi, but routed to one view with a fixed answer (urls.py).

The gap between it and POST /api/v1/events is what authentication, validation and the
database cost; the rest is HTTP, WSGI and Django.
"""

from django.conf import settings

from recsite.wsgi import application  # noqa: F401  (also sets Django up)

settings.ROOT_URLCONF = "benchmarks.baseline.urls"
