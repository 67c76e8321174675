"""Tasks that belong to no app: the worker round-trip check."""

import os


def ping(payload: str) -> dict:
    """Echo back the payload with the worker's pid, proving a worker ran it."""
    return {"payload": payload, "worker_pid": os.getpid()}
