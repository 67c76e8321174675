"""django-q2 entry points for training: thin wrappers that load the run and call the service."""

from models_app import services
from models_app.models import TrainingRun


def run_training(run_id: int) -> str:
    run = TrainingRun.objects.select_related("solution", "project").get(pk=run_id)
    return services.run_training(run).status


def retrain_solution(solution_id: int) -> str:
    """Called by the ``retrain-solution-<pk>`` schedule: queue a run unless one is going."""
    return services.scheduled_retrain(solution_id)


def run_export(export_id: int) -> str:
    from models_app import exports
    from models_app.models import BatchExport

    export = BatchExport.objects.select_related("version", "project").get(pk=export_id)
    return exports.run_export(export).status
