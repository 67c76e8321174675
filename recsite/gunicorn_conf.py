"""gunicorn settings of recsite's web server (``manage.py serve``, the benchmarks):
``gunicorn -c python:recsite.gunicorn_conf recsite.wsgi:application``.

Each worker loads the deployed models and catalogues before it takes requests (the first
requests do not wait for them), then moves everything loaded so far out of the garbage
collector's way: ``gc.freeze()`` keeps those hundreds of thousands of long-lived objects
(Django, numpy, the catalogues) out of every full collection, which otherwise stalled a
worker for 100 ms or more now and then (docs/benchmarks.md).
"""

import gc
import logging
import time

logger = logging.getLogger("recsite.web")

# A worker that takes longer than gunicorn's timeout to start is killed: keep well under it.
WARM_UP_SECONDS = 30.0


def post_worker_init(worker):
    from django.db import connections

    from feeds.recommending import warm_up

    began = time.monotonic()
    try:
        ready = warm_up(WARM_UP_SECONDS)
    except Exception:  # a worker must start even when the database is away
        logger.exception("Warming up the serving caches failed; models load on first use.")
        ready = 0
    finally:
        connections.close_all()
    gc.collect()
    gc.freeze()
    logger.info(
        "Worker %s ready: %d campaign(s) loaded in %.1f s.",
        worker.pid,
        ready,
        time.monotonic() - began,
    )
