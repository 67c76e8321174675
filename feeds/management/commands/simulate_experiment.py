"""Drive simulated users through a running experiment, with a planted lift in one variant.

    python manage.py simulate_experiment --project SLUG --experiment NAME --users 2000 \
        --ctr-lift 0.2 [--lift-variant b] [--base-ctr 0.05] [--purchase-rate 0.2] [--seed 1]

Every simulated user gets a real response (logged with its variant) and sends real click and
purchase events back with the response's recommendation id: afterwards the experiment's page
shows the results (docs/experiments.md). ``--ctr-lift 0`` is an A/A-style run.
"""

from django.core.management.base import BaseCommand, CommandError

from datasets.models import Project
from feeds import experiments
from feeds.models import Experiment
from feeds.recommending import ServingError
from feeds.services import InvalidInput


class Command(BaseCommand):
    help = "Simulate users and their clicks/purchases in a running experiment (planted lift)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument("--experiment", required=True, help="The experiment's name.")
        parser.add_argument("--users", type=int, default=1000, help="Simulated users (1000).")
        parser.add_argument(
            "--ctr-lift",
            type=float,
            default=0.2,
            help="Relative CTR lift planted in --lift-variant (0.2 = +20%%; 0 = none).",
        )
        parser.add_argument(
            "--lift-variant", default=None, help="Variant with the lift (first non-control)."
        )
        parser.add_argument("--base-ctr", type=float, default=0.05, help="Click rate (0.05).")
        parser.add_argument(
            "--purchase-rate", type=float, default=0.2, help="Purchases per click (0.2)."
        )
        parser.add_argument("--num-results", type=int, default=10, help="Items per response.")
        parser.add_argument("--seed", type=int, default=0, help="Random seed and user-id prefix.")

    def handle(self, *args, **options):
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with the slug “{options['project']}”.")
        experiment = Experiment.objects.filter(project=project, name=options["experiment"]).first()
        if experiment is None:
            names = ", ".join(
                Experiment.objects.filter(project=project).values_list("name", flat=True)
            )
            raise CommandError(
                f"No experiment “{options['experiment']}” in {project.slug} "
                f"({'experiments: ' + names if names else 'no experiment yet'})."
            )
        try:
            summary = experiments.simulate_traffic(
                experiment=experiment,
                users=options["users"],
                ctr_lift=options["ctr_lift"],
                lift_variant=options["lift_variant"],
                base_ctr=options["base_ctr"],
                purchase_rate=options["purchase_rate"],
                num_results=options["num_results"],
                seed=options["seed"],
            )
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        except ServingError as exc:
            raise CommandError(f"Serving failed: {exc.message}") from None
        for label, entry in summary.items():
            self.stdout.write(
                f"{label}: {entry['users']} users, {entry['impressions']} impressions, "
                f"{entry['clicks']} clicks, {entry['purchases']} purchases"
            )
        self.stdout.write(self.style.SUCCESS("Done: open the experiment's page for the results."))
