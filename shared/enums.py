"""Enumerations stored in the database and carried in messages. Values are stable strings."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    QUEUED = "queued"
    ATTEMPTING = "attempting"
    EXECUTING = "executing"
    PASSED = "passed"
    FAILED = "failed"
    REFINING = "refining"
    REFINED = "refined"
    UNREFINABLE = "unrefinable"
    NEEDS_TEACHER = "needs_teacher"
    BUDGET_EXHAUSTED = "budget_exhausted"
    ERROR = "error"


class TestFormat(StrEnum):
    ASSERTS = "asserts"  # MBPP style: a list of assert statements
    CHECK = "check"  # HumanEval style: def check(candidate) plus an entry point
    IO = "io"  # call expression and expected value pairs


class TestSet(StrEnum):
    SEEN = "seen"
    HIDDEN = "hidden"


class ExecutionOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # an assertion did not hold
    ERROR = "error"  # an exception other than AssertionError
    SYNTAX_ERROR = "syntax_error"
    TIMEOUT = "timeout"
    RESOURCE_LIMIT = "resource_limit"  # memory, output or file-size cap
    EARLY_EXIT = "early_exit"  # the program left before the tests finished
    SANDBOX_ERROR = "sandbox_error"  # our infrastructure failed, not the program


class Forgery(StrEnum):
    """Why the judge suspects a program of forging its verdict (never a pass either way)."""

    NON_DATA = "non_data"  # it answered a test's call with an object that is not plain data
    TAMPERING = "tampering"  # it broke the protocol of its channel to the judge


class ValidationOutcome(StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    REJECTED = "rejected"


class RejectionReason(StrEnum):
    NO_CODE = "no_code"
    FAILED_TESTS = "failed_tests"
    EARLY_EXIT = "early_exit"
    TOUCHES_HARNESS = "touches_harness"
    HARDCODES_EXPECTED = "hardcodes_expected"
    SAME_AS_ATTEMPT = "same_as_attempt"
    TEACHER_ERROR = "teacher_error"
    FORGED_VERDICT = "forged_verdict"  # the judge flagged its validation run as forging


class ExampleVariant(StrEnum):
    PERSD = "persd"
    PERSD_REFINE = "persd_refine"
    STAND = "stand"


class Split(StrEnum):
    TRAIN = "train"
    HELDOUT = "heldout"


class AdapterStatus(StrEnum):
    TRAINING = "training"
    EVALUATING = "evaluating"
    READY = "ready"
    ACTIVE = "active"
    REJECTED = "rejected"
    FAILED = "failed"
    RETIRED = "retired"
    # Trained by ``persd experiment`` to be measured, never to serve: no promotion path accepts
    # it (shared.registry.PROMOTABLE leaves it out).
    EXPERIMENT = "experiment"


class AdapterAlias(StrEnum):
    ACTIVE = "active"
    CANDIDATE = "candidate"


class TrainingRunStatus(StrEnum):
    RUNNING = "running"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    FAILED = "failed"


class TrainingTrigger(StrEnum):
    """Why a training run starts (``TrainRequest.trigger``, ``training_runs.trigger``). The first
    two are the scheduled trigger's conditions (services/trainer/trigger.py); a manual run is an
    operator's, and is not held back by the trigger."""

    COUNT = "count"  # enough new training examples
    INTERVAL = "interval"  # enough time passed with at least one new example
    MANUAL = "manual"


class TrainingPhase(StrEnum):
    """Where a running training run is (its live progress)."""

    PREPARING = "preparing"  # loading the model and tokenizing
    TRAINING = "training"
    EVALUATING = "evaluating"  # the gate
    PROMOTING = "promoting"


class ApiScope(StrEnum):
    SUBMIT = "submit"
    READ = "read"
    ADMIN = "admin"


class ExperimentArm(StrEnum):
    """The recipes ``persd experiment`` compares (the PERsD paper's training-example formats)."""

    BASE = "base"  # the student as it is: no adapter
    STAND = "stand"
    PERSD = "persd"
    PERSD_REFINE = "persd_refine"
    PERSD_COMBINED = "persd_combined"


class ExperimentStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"  # Ctrl-C or a crash: re-running the same name resumes it
    FAILED = "failed"


class AnswerSource(StrEnum):
    """Who wrote a task's accepted answer (``tasks.answer_source``)."""

    STUDENT = "student"
    TEACHER = "teacher"


class TeacherBackend(StrEnum):
    """The backend that answered a refinement (``refinements.teacher_backend``). The teacher's
    ``TEACHER_BACKEND`` setting adds ``auto``, which picks one of these and is never stored."""

    OPENAI = "openai"  # any OpenAI-compatible endpoint: OpenAI, Azure, vLLM, ...
    REFERENCE = "reference"  # the task's own reference solution, no call, no cost
    REPLAY = "replay"  # replies recorded earlier, from a JSONL file


class ExecutionSubject(StrEnum):
    """What an ``executor.run`` request runs: an attempt's code or a refinement's."""

    ATTEMPT = "attempt"
    REFINEMENT = "refinement"


class RetentionKind(StrEnum):
    """The sets every adapter version is measured on (services/retention/)."""

    LESSONS = "lessons"  # refined tasks whose training examples some version was trained on
    ABILITIES = "abilities"  # tasks the student passed at step 1, with no adapter or an earlier one
    PROBES = "probes"  # held-out tasks: never trained on by any version


class RetentionOccasion(StrEnum):
    """When a version was measured: as the gate's candidate, or as the served active version
    after its promotion (shadow attempts, never counted as user tasks)."""

    GATE = "gate"
    PROMOTION = "promotion"
