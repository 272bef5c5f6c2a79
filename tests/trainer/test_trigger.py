"""When beat starts a run: N new examples, or T minutes with any, measured from the last finished
run; failed runs do not move the mark."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from services.trainer.selection import select_training
from services.trainer.trigger import evaluate
from shared.db import session_scope
from shared.enums import AdapterStatus, ExampleVariant, Split, TrainingRunStatus
from shared.models import Adapter, TrainingExample, TrainingRun
from shared.models.base import utcnow
from tests.trainer.support import SET_A, SET_B, seed


def _run(status: TrainingRunStatus, through: int, minutes_ago: float, adapter_id=None) -> int:
    with session_scope() as s:
        run = TrainingRun(
            status=status,
            trigger="manual",
            config={},
            examples_through_id=through,
            finished_at=utcnow() - timedelta(minutes=minutes_ago),
            adapter_id=adapter_id,
        )
        s.add(run)
        s.flush()
        return run.id


def _age_examples(minutes: float) -> None:
    with session_scope() as s:
        s.execute(update(TrainingExample).values(created_at=utcnow() - timedelta(minutes=minutes)))


def test_nothing_new_is_never_due(db, make_config) -> None:
    with session_scope() as s:
        state = evaluate(s, make_config(min_new_examples=1))
    assert (state.reason, state.new_examples, state.detail) == (None, 0, "no new training examples")


def test_count_condition(db, make_config) -> None:
    seed(SET_A[:4])
    config = make_config(min_new_examples=4, interval_minutes=60)
    with session_scope() as s:
        state = evaluate(s, config)
    assert (state.reason, state.new_examples, state.detail) == ("count", 4, "4 new example(s) >= 4")
    with session_scope() as s:
        state = evaluate(s, make_config(min_new_examples=5, interval_minutes=60))
    assert state.reason is None
    assert state.detail == "not due: 4 new example(s) < 5, 0.0 of 60 min"


def test_interval_condition_counts_from_the_oldest_new_example_before_any_run(
    db, make_config
) -> None:
    seed(SET_A[:2])
    _age_examples(61)
    with session_scope() as s:
        state = evaluate(s, make_config(min_new_examples=50, interval_minutes=60))
    assert state.reason == "interval"
    assert state.detail.startswith("61.0 min >= 60 min with 2 new example(s)")


def test_new_examples_are_those_after_the_last_finished_run(db, make_config) -> None:
    ids = seed(SET_A)
    _run(TrainingRunStatus.REJECTED, through=ids[5], minutes_ago=5)
    with session_scope() as s:
        state = evaluate(s, make_config(min_new_examples=4, interval_minutes=60))
    assert (state.reason, state.new_examples, state.since_id) == ("count", 4, ids[5])
    # The interval clock starts at that run's end.
    with session_scope() as s:
        state = evaluate(s, make_config(min_new_examples=50, interval_minutes=4))
    assert state.reason == "interval"
    with session_scope() as s:
        state = evaluate(s, make_config(min_new_examples=50, interval_minutes=6))
    assert state.reason is None


def test_a_failed_run_leaves_its_examples_new_but_backs_off(db, make_config) -> None:
    ids = seed(SET_A[:3])
    _run(TrainingRunStatus.FAILED, through=ids[-1], minutes_ago=2)
    config = make_config(min_new_examples=3, failure_backoff_minutes=10)
    with session_scope() as s:
        state = evaluate(s, config)
    assert state.reason is None and state.new_examples == 3
    assert state.detail == "3 new example(s), but the last run failed; retrying in 8.0 min"
    with session_scope() as s:
        state = evaluate(s, make_config(min_new_examples=3, failure_backoff_minutes=1))
    assert state.reason == "count"


def test_only_the_configured_mix_and_the_train_split_count(db, make_config) -> None:
    seed(SET_A[:3], variants=(ExampleVariant.PERSD, ExampleVariant.PERSD_REFINE))
    seed(SET_B[:2], split=Split.HELDOUT)
    seed(SET_B[2:], variants=(ExampleVariant.STAND,))
    counts = {}
    for mix in ("persd", "persd_refine", "persd_combined", "stand"):
        with session_scope() as s:
            counts[mix] = evaluate(s, make_config(variant_mix=mix)).new_examples
    assert counts == {"persd": 3, "persd_refine": 3, "persd_combined": 6, "stand": 2}


def test_selection_fresh_takes_all_and_continuing_takes_what_the_parent_has_not_seen(
    db, make_config
) -> None:
    ids = seed(SET_A, variants=(ExampleVariant.PERSD, ExampleVariant.PERSD_REFINE))
    with session_scope() as s:
        parent = Adapter(
            name="p",
            base_model="b",
            artifact_path="/p",
            content_hash="0" * 64,
            status=AdapterStatus.ACTIVE,
        )
        s.add(parent)
        s.flush()
        parent_id = parent.id
    _run(TrainingRunStatus.PROMOTED, through=ids[9], minutes_ago=1, adapter_id=parent_id)
    config = make_config(variant_mix="persd_combined")
    with session_scope() as s:
        fresh = select_training(s, config, None)
        cont = select_training(s, config, s.get(Adapter, parent_id))
    assert [p.example_id for p in fresh.pairs] == ids
    assert (fresh.since_id, fresh.through_id, fresh.parent_id) == (0, ids[-1], None)
    assert (cont.since_id, cont.through_id, cont.parent_id) == (ids[9], ids[-1], parent_id)
    # Continued: the new examples first, then every example the parent learned (rehearsal).
    assert [p.example_id for p in cont.pairs[: cont.new]] == ids[10:]
    assert cont.rehearsed == 10 and sorted(p.example_id for p in cont.pairs[10:]) == ids[:10]
    with session_scope() as s:
        few = select_training(s, make_config(rehearsal_examples=3), s.get(Adapter, parent_id))
        again = select_training(s, make_config(rehearsal_examples=3), s.get(Adapter, parent_id))
        none = select_training(s, make_config(rehearsal_examples=0), s.get(Adapter, parent_id))
    # persd only: 5 learned (the even ids of the first 10), 5 new; a sample of 3 of the learned
    learned = [p.example_id for p in few.pairs[few.new :]]
    assert few.rehearsed == 3 and set(learned) < set(ids[0:10:2])
    assert [p.example_id for p in again.pairs] == [p.example_id for p in few.pairs]  # seeded
    assert none.rehearsed == 0 and len(none.pairs) == 5
