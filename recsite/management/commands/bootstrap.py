"""First-run set-up for `make run`: a demo admin, the Demo shop project, its data, a first
model version per demo recipe, a campaign ``default`` serving the personalized one and a feed
``home`` mixing it with trending and popular items."""

import os
import secrets
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from datasets.models import Project
from datasets.services import add_member, create_project
from recsite.management.commands.serve import DEFAULT_BIND

DEMO_ADMIN = "admin"
DEMO_PROJECT_SLUG = "demo-shop"
DEMO_CAMPAIGN_RECIPE = "user-personalization"
DEMO_FEED = "home"


class Command(BaseCommand):
    help = (
        "Create the demo admin and the Demo shop project, generate and import the demo data, "
        "train the demo models, deploy the campaign 'default' and build the feed 'home' "
        "(idempotent)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--skip-data", action="store_true", help="Do not generate the demo shop files."
        )
        parser.add_argument(
            "--interactions",
            type=int,
            default=675_000,
            help="Size of the generated demo shop (default: Personalize's tutorial size).",
        )

    def handle(self, *args, skip_data=False, interactions=675_000, **options):
        admin = self._ensure_admin()
        project = self._ensure_demo_project(admin)
        if not skip_data:
            self._ensure_demo_files(interactions)
            self._import_demo_data(project, admin)
            self._train_demo_models(project, admin)
            self._deploy_default_campaign(project, admin)
            self._build_demo_feed(project, admin)

    def _ensure_admin(self):
        User = get_user_model()
        credentials_file = settings.DATA_DIR / "demo-admin.txt"
        admin = User.objects.filter(username=DEMO_ADMIN).first()
        if admin is not None:
            self.stdout.write(f"Demo admin: login '{DEMO_ADMIN}', password in {credentials_file}")
            return admin
        password = secrets.token_urlsafe(12)
        admin = User.objects.create_superuser(DEMO_ADMIN, email="", password=password)
        credentials_file.write_text(f"login: {DEMO_ADMIN}\npassword: {password}\n")
        credentials_file.chmod(0o600)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the demo admin. Log in at http://{os.environ.get('BIND', DEFAULT_BIND)}/"
                " with\n"
                f"    login:    {DEMO_ADMIN}\n    password: {password}\n"
                f"(also saved in {credentials_file})"
            )
        )
        return admin

    def _ensure_demo_project(self, admin):
        project = Project.objects.filter(slug=DEMO_PROJECT_SLUG).first()
        if project is None:
            project = create_project(
                name="Demo shop",
                slug=DEMO_PROJECT_SLUG,
                owner=admin,
                description="A synthetic shop with planted segments, trends and bundles.",
            )
            self.stdout.write(f"Created project '{project.name}'.")
        else:
            add_member(project=project, user=admin, role="owner")
        return project

    def _ensure_demo_files(self, interactions):
        from datasets.ingest.demo import generate_demo_shop

        out = settings.DEMO_DATA_DIR
        if (out / "ground_truth.json").exists():
            self.stdout.write(f"Demo shop data already in {out}.")
            return
        started = time.perf_counter()
        generate_demo_shop(out, n_interactions=interactions)
        self.stdout.write(
            f"Generated the demo shop data in {out} ({time.perf_counter() - started:.1f} s)."
        )

    def _import_demo_data(self, project, admin):
        """Import each demo file once, so a new user lands on real-looking data."""
        from datasets import imports
        from datasets.models import ImportJob

        for kind in ("items", "users", "interactions", "relations"):
            if imports.has_imported(project, kind):
                continue
            job = imports.import_file(
                project=project,
                kind=kind,
                path=settings.DEMO_DATA_DIR / f"{kind}.csv",
                mode=ImportJob.Mode.FULL,
                user=admin,
            )
            if job.status != ImportJob.Status.SUCCEEDED:
                self.stderr.write(f"Importing the demo {kind} failed: {job.error}")
                continue
            self.stdout.write(
                f"Imported {job.report['accepted']:,} demo {kind} in {job.report['seconds']} s."
            )

    def _train_demo_models(self, project, admin):
        """A first model version per demo recipe, so the Models page has something to show."""
        from models_app import services
        from models_app.models import ModelVersion

        for recipe in ("popularity-count", "user-personalization"):
            if ModelVersion.objects.filter(project=project, recipe=recipe).exists():
                continue
            solution = services.create_solution(project=project, recipe=recipe)
            run = services.start_training(solution=solution, user=admin, enqueue=False)
            run = services.run_training(run)
            if run.status != "succeeded":
                self.stderr.write(f"Training the demo {recipe} failed: {run.error}")
                continue
            self.stdout.write(
                f"Trained the demo {recipe} in {run.duration_seconds:.1f} s "
                f"(NDCG@10 {run.version.metrics.get('ndcg@10', 0):.3f})."
            )

    def _deploy_default_campaign(self, project, admin):
        """The campaign ``default`` serving the demo's user-personalization version, so the
        API answers a first call that names no campaign. Left alone once it serves a version
        (a second bootstrap changes nothing, and neither does a version deployed by hand)."""
        from models_app import services
        from models_app.models import Campaign, ModelVersion
        from models_app.serving import DEFAULT_CAMPAIGN_NAME

        campaign = Campaign.objects.filter(project=project, name=DEFAULT_CAMPAIGN_NAME).first()
        if campaign is not None and campaign.version_id is not None:
            self.stdout.write(
                f"Campaign '{campaign.name}' serves model version #{campaign.version_id}."
            )
            return
        version = (
            ModelVersion.objects.filter(project=project, recipe=DEMO_CAMPAIGN_RECIPE)
            .order_by("-created_at", "-pk")
            .first()
        )
        if version is None:
            self.stderr.write(
                f"No {DEMO_CAMPAIGN_RECIPE} model version to deploy: campaign "
                f"'{DEFAULT_CAMPAIGN_NAME}' was not set up. Train one on the Models page, "
                "then deploy it on the Campaigns page."
            )
            return
        try:
            if campaign is None:
                services.create_campaign(
                    project=project,
                    name=DEFAULT_CAMPAIGN_NAME,
                    description="Personalized recommendations for the demo shop.",
                    solution=version.solution,
                    version=version,
                    user=admin,
                )
            else:
                services.deploy(campaign, version, user=admin)
        except ValueError as exc:
            self.stderr.write(f"Deploying the campaign '{DEFAULT_CAMPAIGN_NAME}' failed: {exc}")
            return
        self.stdout.write(
            f"Deployed model version #{version.pk} ({DEMO_CAMPAIGN_RECIPE}) to the campaign "
            f"'{DEFAULT_CAMPAIGN_NAME}': GET /api/v1/recommendations?user_id=... now answers."
        )

    def _build_demo_feed(self, project, admin):
        """The feed ``home`` (3 personalized, 1 trending, 1 popular), so the Feeds and
        Experiments pages have something to show. Built only while the project has no feed,
        so a second bootstrap does not duplicate it nor add it next to the user's own feeds."""
        from feeds.feeds import (
            CAMPAIGN_PREFIX,
            POPULAR,
            TRENDING,
            InvalidFeed,
            create_feed,
            feed_names,
        )
        from models_app.serving import DEFAULT_CAMPAIGN_NAME

        names = feed_names(project)
        if names:
            self.stdout.write(f"Feeds already built: {', '.join(names)}.")
            return
        try:
            feed = create_feed(
                project=project,
                name=DEMO_FEED,
                description="Personalized items mixed with trending and popular ones.",
                slots=[(CAMPAIGN_PREFIX + DEFAULT_CAMPAIGN_NAME, 3), (TRENDING, 1), (POPULAR, 1)],
                fallback_source=POPULAR,
                user=admin,
            )
        except InvalidFeed as exc:
            self.stderr.write(f"Building the demo feed '{DEMO_FEED}' failed: {exc}")
            return
        self.stdout.write(
            f"Built the feed '{feed.name}' (3 x campaign '{DEFAULT_CAMPAIGN_NAME}', 1 x trending, "
            f"1 x popular): GET /api/v1/feeds/{feed.name}?user_id=... now answers."
        )
