"""ORM models. Importing this package registers every table on ``Base.metadata``."""

from shared.models.adapters import Adapter, AdapterAliasRow, TrainingRun
from shared.models.auth import ApiKey
from shared.models.base import Base
from shared.models.experiments import Experiment, ExperimentRun
from shared.models.refinements import Refinement, TrainingExample
from shared.models.retention import RetentionMeasurement, RetentionMember, RetentionResult
from shared.models.tasks import Attempt, Execution, Task

__all__ = [
    "Adapter",
    "AdapterAliasRow",
    "ApiKey",
    "Attempt",
    "Base",
    "Execution",
    "Experiment",
    "ExperimentRun",
    "Refinement",
    "RetentionMeasurement",
    "RetentionMember",
    "RetentionResult",
    "Task",
    "TrainingExample",
    "TrainingRun",
]
