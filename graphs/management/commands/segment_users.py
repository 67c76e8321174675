"""Cluster a project's users (or analyse its follower graph) in this process, from the shell."""

from django.core.management.base import BaseCommand, CommandError

from datasets.models import Project
from graphs import services
from graphs.models import ClusteringRun


class Command(BaseCommand):
    help = (
        "Run a clustering of a project's users (k-means on behaviour or graph features, spectral "
        "clustering or Louvain on the follower graph) or, with --method graph, a follower-graph "
        "analysis, in this process; print the result and optionally save the clustering as a "
        "users field. The run appears on the Segments page like one started there."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument(
            "--method",
            default=ClusteringRun.Method.KMEANS_BEHAVIOUR,
            choices=[*ClusteringRun.Method.values, "graph"],
        )
        parser.add_argument("--k-min", type=int, default=2)
        parser.add_argument("--k-max", type=int, default=10)
        parser.add_argument(
            "--goal-event", default="", help="k-means on behaviour (default purchase)"
        )
        parser.add_argument("--resolution", type=float, default=1.0, help="Louvain")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--save-field", default="", help="save the segments into this users field, e.g. SEGMENT"
        )

    def handle(self, *args, project, method, k_min, k_max, goal_event, resolution, seed,
               save_field, **_):  # fmt: skip
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"No project with slug {project!r}.")
        try:
            if method == "graph":
                run = services.start_graph_run(project=found, params={"seed": seed}, enqueue=False)
                run = services.run_graph(run)
            else:
                params = {"seed": seed}
                if method == ClusteringRun.Method.LOUVAIN:
                    params["resolution"] = resolution
                else:
                    params.update(k_min=k_min, k_max=k_max)
                if method == ClusteringRun.Method.KMEANS_BEHAVIOUR:
                    params["goal_event"] = goal_event
                run = services.start_clustering_run(
                    project=found, method=method, params=params, enqueue=False
                )
                run = services.run_clustering(run)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if run.status != "succeeded":
            raise CommandError(f"Run #{run.pk} {run.status}: {run.error}")
        if method == "graph":
            between = run.report["betweenness"]
            sample = "" if between["k"] is None else f", k = {between['k']}"
            self.stdout.write(
                f"Graph analysis #{run.pk}: {run.n_users} users, {run.n_edges} edges, betweenness "
                f"{between['method']}{sample}."
            )
            for message in run.report["input"]["messages"]:
                self.stdout.write(f"  {message}")
            return
        quality = (
            f"silhouette {run.silhouette:.3f}" if run.silhouette is not None
            else f"modularity {run.modularity:.3f}"
        )  # fmt: skip
        self.stdout.write(f"Clustering run #{run.pk}: k = {run.k}, {quality}.")
        for profile in run.profiles:
            self.stdout.write(f"  {profile['name']}: {profile['size']} users")
        if save_field:
            try:
                written = services.save_segment_field(run=run, field=save_field)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"Saved {save_field} on {written} users.")
