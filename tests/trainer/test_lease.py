"""The training lock on the real Redis: exclusive, renewed by its heartbeat, gone after one lease
when its holder dies, and never taken back by a holder whose lease lapsed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from services.trainer.lease import (
    LeaseLost,
    LockBusy,
    TrainingLease,
    holder,
    lock_key,
    redis_client,
)


@pytest.fixture(autouse=True)
def _no_lock_left():
    redis_client().delete(lock_key())
    yield
    redis_client().delete(lock_key())


def test_one_holder_at_a_time() -> None:
    with TrainingLease(3, label="first") as first:
        assert holder() == first.token and first.token.startswith("first:")
        with pytest.raises(LockBusy) as err:
            TrainingLease(3, label="second").acquire()
        assert err.value.message == (
            f"a training run is already in progress (lock held by {first.token})"
        )
    assert holder() is None
    with TrainingLease(3, label="third"):
        pass


def test_heartbeat_keeps_the_lock_past_its_lease() -> None:
    beats = []
    with TrainingLease(3, on_beat=lambda: beats.append(1) or True) as lease:
        time.sleep(4.5)  # one and a half leases
        assert holder() == lease.token
        lease.check()
    assert len(beats) >= 3


def test_a_killed_holder_frees_the_lock_after_one_lease() -> None:
    code = (
        "from services.trainer.lease import TrainingLease\n"
        "import time, sys\n"
        "TrainingLease(3, label='doomed').acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=os.environ, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        assert holder().startswith("doomed:")
        time.sleep(2)  # it has renewed by now
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        with pytest.raises(LockBusy):
            TrainingLease(3).acquire()
        deadline = time.monotonic() + 5
        while holder() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert holder() is None
        with TrainingLease(3, label="next") as lease:
            assert holder() == lease.token
    finally:
        proc.kill()


def test_a_lapsed_holder_cannot_renew_or_release_anothers_lock() -> None:
    old = TrainingLease(3, label="old")
    old.acquire()
    old._stop.set()  # its heartbeat stalls (a paused process)
    client = redis_client()
    client.delete(lock_key())  # its lease lapsed ...
    new = TrainingLease(3, label="new")
    new.acquire()  # ... and another trainer took over
    try:
        assert old.renew() is False
        old.release()
        assert holder() == new.token
    finally:
        new.release()


def test_a_lost_lease_stops_the_run_at_its_next_check() -> None:
    lease = TrainingLease(3, label="x", on_beat=lambda: False)
    lease.acquire()
    try:
        assert lease.lost.wait(3)
        with pytest.raises(LeaseLost) as err:
            lease.check()
        assert err.value.message == (
            "the training lease lapsed and another trainer may hold the lock; this run stops"
        )
    finally:
        lease.release()
