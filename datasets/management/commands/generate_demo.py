"""``manage.py generate_demo``: write the synthetic demo shop (see datasets.ingest.demo)."""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from datasets.ingest.demo import generate_demo_shop

COUNT_OPTIONS = ("users", "items", "interactions")


class Command(BaseCommand):
    help = "Generate the synthetic demo shop (users, items, interactions, relations, truth)."

    def add_arguments(self, parser):
        parser.add_argument("--out", default="demo_data", help="Output directory.")
        parser.add_argument("--users", type=int, default=6000, help="Number of users.")
        parser.add_argument("--items", type=int, default=2465, help="Number of items.")
        parser.add_argument(
            "--interactions", type=int, default=675_000, help="Number of interaction rows."
        )
        parser.add_argument("--seed", type=int, default=42, help="Random seed (>= 0).")

    def handle(self, *args, **options):
        for name in COUNT_OPTIONS:
            if options[name] <= 0:
                raise CommandError(f"--{name} must be a positive integer, got {options[name]}.")
        if options["seed"] < 0:
            raise CommandError(f"--seed must be a non-negative integer, got {options['seed']}.")

        started = time.perf_counter()
        try:
            summary = generate_demo_shop(
                Path(options["out"]),
                n_users=options["users"],
                n_items=options["items"],
                n_interactions=options["interactions"],
                seed=options["seed"],
            )
        except ValueError as error:  # sizes below the generator's minimums
            raise CommandError(str(error)) from error
        elapsed = time.perf_counter() - started

        for name, path in summary["files"].items():
            rows = summary["counts"].get(name)
            detail = f"{rows} rows" if rows is not None else "planted structure"
            self.stdout.write(f"{Path(path).name}: {detail} -> {path}")
        self.stdout.write(
            self.style.SUCCESS(f"Demo shop generated in {elapsed:.1f} s (seed {summary['seed']}).")
        )
