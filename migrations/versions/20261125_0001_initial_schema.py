"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 17:52:37.863812
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "adapters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("base_model", sa.String(length=500), nullable=False),
        sa.Column("artifact_path", sa.String(length=1000), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "training",
                "evaluating",
                "ready",
                "active",
                "rejected",
                "failed",
                "retired",
                name="adapterstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["adapters.id"], name=op.f("fk_adapters_parent_id_adapters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapters")),
        sa.UniqueConstraint("name", name=op.f("uq_adapters_name")),
    )
    with op.batch_alter_table("adapters", schema=None) as batch_op:
        batch_op.create_index("ix_adapters_status", ["status"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "attempting",
                "executing",
                "passed",
                "failed",
                "refining",
                "refined",
                "unrefinable",
                "needs_teacher",
                "budget_exhausted",
                "error",
                name="taskstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("header", sa.Text(), nullable=False),
        sa.Column("entry_point", sa.String(length=200), nullable=False),
        sa.Column("seen_tests", sa.JSON(), nullable=False),
        sa.Column("hidden_tests", sa.JSON(), nullable=True),
        sa.Column("reference_solution", sa.Text(), nullable=True),
        sa.Column("source_dataset", sa.String(length=100), nullable=True),
        sa.Column("source_id", sa.String(length=200), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("max_steps", sa.Integer(), nullable=False),
        sa.Column("benchmark_match", sa.String(length=200), nullable=True),
        sa.Column("answer_code", sa.Text(), nullable=True),
        sa.Column("answer_source", sa.String(length=20), nullable=True),
        sa.Column("hidden_passed", sa.Boolean(), nullable=True),
        sa.CheckConstraint("max_steps >= 1", name=op.f("ck_tasks_max_steps_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_tasks_idempotency_key")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_tasks_status_updated", ["status", "updated_at"], unique=False)

    op.create_table(
        "adapter_aliases",
        sa.Column(
            "alias",
            sa.Enum("active", "candidate", name="adapteralias", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name=op.f("fk_adapter_aliases_adapter_id_adapters")
        ),
        sa.PrimaryKeyConstraint("alias", name=op.f("pk_adapter_aliases")),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=True),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("completion", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("sampling", sa.JSON(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name=op.f("fk_attempts_adapter_id_adapters")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_attempts_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint(
            "task_id", "step", "sample_index", name=op.f("uq_attempts_task_id_step_sample_index")
        ),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_attempts_adapter_created", ["adapter_id", "created_at"], unique=False
        )

    op.create_table(
        "training_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "running",
                "promoted",
                "rejected",
                "failed",
                name="trainingrunstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("trigger", sa.String(length=50), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("examples_used", sa.Integer(), nullable=False),
        sa.Column("examples_through_id", sa.Integer(), nullable=False),
        sa.Column("loss_curve", sa.JSON(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("adapter_id", sa.Integer(), nullable=True),
        sa.Column("gate", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name=op.f("fk_training_runs_adapter_id_adapters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_runs")),
    )
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_training_runs_status_started", ["status", "started_at"], unique=False
        )

    op.create_table(
        "refinements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("teacher_backend", sa.String(length=50), nullable=False),
        sa.Column("teacher_model", sa.String(length=200), nullable=False),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column(
            "validation",
            sa.Enum(
                "pending",
                "passed",
                "rejected",
                name="validationoutcome",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "rejection_reason",
            sa.Enum(
                "no_code",
                "failed_tests",
                "early_exit",
                "touches_harness",
                "hardcodes_expected",
                "same_as_attempt",
                "teacher_error",
                name="rejectionreason",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("rejection_detail", sa.Text(), nullable=True),
        sa.Column("error_type", sa.String(length=100), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=12, scale=6), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["attempts.id"],
            name=op.f("fk_refinements_attempt_id_attempts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_refinements_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refinements")),
        sa.UniqueConstraint("attempt_id", "round", name=op.f("uq_refinements_attempt_id_round")),
    )
    with op.batch_alter_table("refinements", schema=None) as batch_op:
        batch_op.create_index("ix_refinements_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_refinements_task", ["task_id"], unique=False)
        batch_op.create_index(
            "ix_refinements_validation_created", ["validation", "created_at"], unique=False
        )

    op.create_table(
        "executions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("refinement_id", sa.Integer(), nullable=True),
        sa.Column(
            "test_set",
            sa.Enum("seen", "hidden", name="testset", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column(
            "outcome",
            sa.Enum(
                "passed",
                "failed",
                "error",
                "syntax_error",
                "timeout",
                "resource_limit",
                "early_exit",
                "sandbox_error",
                name="executionoutcome",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("test_results", sa.JSON(), nullable=False),
        sa.Column("feedback", sa.Text(), nullable=False),
        sa.Column("error_type", sa.String(length=100), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "(attempt_id IS NULL) <> (refinement_id IS NULL)",
            name=op.f("ck_executions_exactly_one_subject"),
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["attempts.id"],
            name=op.f("fk_executions_attempt_id_attempts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["refinement_id"],
            ["refinements.id"],
            name=op.f("fk_executions_refinement_id_refinements"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
        sa.UniqueConstraint(
            "attempt_id", "test_set", name=op.f("uq_executions_attempt_id_test_set")
        ),
        sa.UniqueConstraint(
            "refinement_id", "test_set", name=op.f("uq_executions_refinement_id_test_set")
        ),
    )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index("ix_executions_outcome", ["outcome"], unique=False)

    op.create_table(
        "training_examples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "variant",
            sa.Enum(
                "persd",
                "persd_refine",
                "stand",
                name="examplevariant",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("refinement_id", sa.Integer(), nullable=True),
        sa.Column(
            "split",
            sa.Enum("train", "heldout", name="split", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["refinement_id"],
            ["refinements.id"],
            name=op.f("fk_training_examples_refinement_id_refinements"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_training_examples_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_examples")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_training_examples_content_hash")),
    )
    with op.batch_alter_table("training_examples", schema=None) as batch_op:
        batch_op.create_index("ix_training_examples_task", ["task_id"], unique=False)
        batch_op.create_index(
            "ix_training_examples_variant_split", ["variant", "split"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("training_examples", schema=None) as batch_op:
        batch_op.drop_index("ix_training_examples_variant_split")
        batch_op.drop_index("ix_training_examples_task")

    op.drop_table("training_examples")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_outcome")

    op.drop_table("executions")
    with op.batch_alter_table("refinements", schema=None) as batch_op:
        batch_op.drop_index("ix_refinements_validation_created")
        batch_op.drop_index("ix_refinements_task")
        batch_op.drop_index("ix_refinements_created_at")

    op.drop_table("refinements")
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_training_runs_status_started")

    op.drop_table("training_runs")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_adapter_created")

    op.drop_table("attempts")
    op.drop_table("adapter_aliases")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_status_updated")
        batch_op.drop_index("ix_tasks_created_at")

    op.drop_table("tasks")
    op.drop_table("api_keys")
    with op.batch_alter_table("adapters", schema=None) as batch_op:
        batch_op.drop_index("ix_adapters_status")

    op.drop_table("adapters")
