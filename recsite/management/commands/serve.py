"""Run the web server and the background worker together; Ctrl-C stops both."""

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

from recsite.blas import THREAD_ENV_VARS

DEFAULT_BIND = "127.0.0.1:8000"  # BIND: where the web server listens


class Command(BaseCommand):
    help = "Start gunicorn (web) and a django-q2 cluster (worker); stop both on Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("BIND", DEFAULT_BIND))
        parser.add_argument(
            "--web-workers", type=int, default=int(os.environ.get("WEB_WORKERS", 2))
        )

    def handle(self, *args, bind, web_workers, **options):
        web_env = {**os.environ, **dict.fromkeys(THREAD_ENV_VARS, "1")}
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "recsite.wsgi:application",
             "--config", "python:recsite.gunicorn_conf", "--bind", bind,
             "--workers", str(web_workers), "--timeout", "120", "--access-logfile", "-"],
            env=web_env,
        )  # fmt: skip
        worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"])
        children = {"web server": web, "worker": worker}
        self.stdout.write(
            self.style.SUCCESS(f"recsite is running on http://{bind}/ (Ctrl-C stops it)")
        )

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for name, proc in children.items():
                if proc.poll() is not None:
                    self.stderr.write(f"The {name} exited with code {proc.returncode}; stopping.")
                    exit_code = proc.returncode or 1
                    stopping = True
            time.sleep(0.5)
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in children.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.stdout.write("Stopped the web server and the worker.")
        if exit_code:
            sys.exit(exit_code)
