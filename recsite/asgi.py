"""ASGI entry point. Limits BLAS threads before anything imports numpy."""

import os

from recsite.blas import limit_blas_threads

limit_blas_threads()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
