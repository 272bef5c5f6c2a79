"""The training lock on the real Redis: exclusive, renewed by its heartbeat, gone after one lease
when its holder dies, and never taken back by a holder whose lease lapsed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from services.trainer.lease import (
    LeaseLost,
    LockBusy,
    TrainingLease,
    holder,
    lock_key,
    redis_client,
)
from tests.support.clock import FakeClock
from tests.support.poll import wait_until


def holder_ttl() -> int:
    return redis_client().pttl(lock_key())


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
    clock = FakeClock()
    beats = []
    client = redis_client()
    with TrainingLease(
        60, client=client, clock=clock, on_beat=lambda: beats.append(1) or True
    ) as lease:
        wait_until(lambda: clock.sleepers, 10, "the heartbeat waiting for its first beat")
        # In Redis the lease has nearly lapsed; one beat (a third of a lease on) renews it.
        client.pexpire(lock_key(), 5000)
        clock.advance(20)
        wait_until(lambda: beats, 10, "a heartbeat after a third of the lease")
        assert client.pttl(lock_key()) > 50_000
        assert holder() == lease.token
        lease.check()
    assert clock.waits[0] == 20


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
        # A renewal (the lock's time to live goes back up) before the kill.
        ttls = [holder_ttl()]
        wait_until(
            lambda: ttls.append(holder_ttl()) or ttls[-1] > ttls[-2], 10, "a renewal", interval=0.05
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        with pytest.raises(LockBusy):
            TrainingLease(3).acquire()
        wait_until(lambda: holder() is None, 5, "the lock freed one lease after its holder died")
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
    clock = FakeClock()
    lease = TrainingLease(3, label="x", on_beat=lambda: False, clock=clock)
    lease.acquire()
    try:
        assert not lease.lost.is_set()
        wait_until(lambda: clock.sleepers, 10, "the heartbeat waiting for its first beat")
        clock.advance(1)
        assert lease.lost.wait(10)
        with pytest.raises(LeaseLost) as err:
            lease.check()
        assert err.value.message == (
            "the training lease lapsed and another trainer may hold the lock; this run stops"
        )
    finally:
        lease.release()
