"""Settings for bench_serving.py: recsite's production settings plus one benchmark-only URL.

The product's URLconf never holds the baseline view; only this module routes to it. The
serving caches keep answers for SERVING_CACHE_SECONDS (environment; 2 here by default).
"""

import os

from recsite.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.serving_urls"
DEBUG = False
SERVING_CACHE_SECONDS = float(os.environ.get("SERVING_CACHE_SECONDS", "2"))
