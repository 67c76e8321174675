"""Train a recipe on a project's interactions from the command line."""

import json

from django.core.management.base import BaseCommand, CommandError

from datasets.models import Project
from models_app import services


def parse_param(text: str) -> tuple[str, object]:
    """``KEY=VALUE``; the value is read as JSON when it parses (numbers, booleans, lists)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CommandError(f"--param {text!r} must look like KEY=VALUE, e.g. --param factors=64.")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


class Command(BaseCommand):
    help = (
        "Train a recipe on a project's interactions. With --wait, train here and print the "
        "model version and its offline metrics; without it, queue a run for the worker."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument(
            "--recipe",
            required=True,
            help="recipe name, e.g. item-knn, or automl to search recipes and parameters "
            "(--param metric=recall@10 --param max_trials=8)",
        )
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="recipe parameter (repeatable); values are parsed as JSON when possible",
        )
        parser.add_argument(
            "--event-types", default="", help="comma-separated event types to use; default all"
        )
        parser.add_argument(
            "--wait", action="store_true", help="train in this process and print the metrics"
        )

    def handle(self, *args, project, recipe, param, event_types, wait, **_):
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"No project with slug {project!r}.")
        params = dict(parse_param(p) for p in param)
        types = [t.strip() for t in event_types.split(",") if t.strip()]
        try:
            solution = services.create_solution(
                project=found, recipe=recipe, params=params, event_types=types
            )
            run = services.start_training(solution=solution, enqueue=not wait)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not wait:
            self.stdout.write(f"Queued training run #{run.pk}; a running worker will train it.")
            return
        run = services.run_training(run)
        if run.status != run.Status.SUCCEEDED:
            raise CommandError(f"Training run #{run.pk} {run.status}: {run.error}")
        version = run.version
        m = version.metrics
        self.stdout.write(
            f"Model version #{version.pk} ({version.recipe}) from run #{run.pk}: "
            f"{version.n_interactions:,} interactions, {version.n_users:,} users, "
            f"{version.n_items:,} items.\n"
            f"fit time: {m.get('fit_seconds', 0):.2f} s (total {run.duration_seconds:.1f} s, "
            f"peak memory {run.peak_memory_bytes / 2**20:.0f} MiB)\n"
            f"NDCG@10: {m.get('ndcg@10', 0):.4f}  recall@10: {m.get('recall@10', 0):.4f}  "
            f"coverage@10: {m.get('coverage@10', 0):.4f}\n"
            f"Protocol R: NDCG@10: {m.get('r:ndcg@10', 0):.4f}  "
            f"recall@10: {m.get('r:recall@10', 0):.4f}  "
            f"coverage@10: {m.get('r:coverage@10', 0):.4f}\n"
            f"artefacts: {version.artefact_dir}"
        )
        if version.trials:
            self.stdout.write(f"AutoML trials ({len(version.trials)}), best first:")
            ranked = sorted(version.trials, key=lambda t: -(t.get("value") or -1.0))
            for trial in ranked:
                value = "failed" if trial.get("value") is None else f"{trial['value']:.4f}"
                self.stdout.write(
                    f"  {'*' if trial['chosen'] else ' '} {trial['recipe']:<28} "
                    f"{trial['metric']} {value:>8}  {json.dumps(trial['params'])}"
                )
