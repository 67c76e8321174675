"""django-q2 entry points for training: thin wrappers that load the run and call the service."""

from models_app import services
from models_app.models import TrainingRun


def run_training(run_id: int) -> str:
    run = TrainingRun.objects.select_related("solution", "project").get(pk=run_id)
    return services.run_training(run).status
