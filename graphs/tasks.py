"""django-q2 entry points for graph analyses and clustering runs: thin wrappers that load the
run and call the service."""

from graphs import services
from graphs.models import ClusteringRun, GraphRun


def run_graph(run_id: int) -> str:
    run = GraphRun.objects.select_related("project").get(pk=run_id)
    return services.run_graph(run).status


def run_clustering(run_id: int) -> str:
    run = ClusteringRun.objects.select_related("project").get(pk=run_id)
    return services.run_clustering(run).status
