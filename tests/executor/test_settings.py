"""Executor settings and the refusal (or loud insecure fallback) when isolation is missing."""

from __future__ import annotations

import logging

import pytest

from services.executor.pool import Slot
from services.executor.settings import ExecutorSettings
from shared.config import load
from shared.enums import ExecutionOutcome as O
from shared.errors import ConfigError, SandboxUnavailable
from tests.executor.conftest import asserts, executor_settings, run


def test_invalid_settings_name_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("EXECUTOR_TIMEOUT_S", "5")
    monkeypatch.setenv("EXECUTOR_MAX_JOB_S", "2")
    monkeypatch.setenv("EXECUTOR_MEMORY_MB", "lots")
    with pytest.raises(ConfigError) as err:
        load(ExecutorSettings)
    assert err.value.message == (
        "invalid configuration: EXECUTOR_MAX_JOB_S: must be at least EXECUTOR_TIMEOUT_S (5);"
        " EXECUTOR_MEMORY_MB: Input should be a valid integer, unable to parse string as an integer"
    )


def test_missing_isolation_is_refused() -> None:
    with pytest.raises(SandboxUnavailable) as err:
        Slot(executor_settings(bwrap="/nonexistent/bwrap", python="/nonexistent/python3"))
    assert err.value.message == (
        "refusing to run untrusted code: this host lacks bubblewrap ('/nonexistent/bwrap' not found;"
        " apt-get install bubblewrap); the sandbox interpreter /nonexistent/python3 (apt-get install"
        " python3) (set EXECUTOR_ALLOW_INSECURE=true only for code you trust)"
    )


def test_insecure_mode_runs_only_when_asked_and_says_so(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="persd.executor")
    slot = Slot(executor_settings(bwrap="/nonexistent/bwrap", allow_insecure=True))
    try:
        assert not slot.isolated
        warnings = [r.getMessage() for r in caplog.records if r.name == "persd.executor"]
        assert len(warnings) == 1
        assert warnings[0].startswith(
            "persd executor: INSECURE MODE: the host lacks bubblewrap ('/nonexistent/bwrap' not"
            " found; apt-get install bubblewrap); EXECUTOR_ALLOW_INSECURE is set, so untrusted code"
            " runs WITHOUT a sandbox"
        )
        # Verdicts, rlimits and timeouts still work; isolation does not (the job is root here).
        code = "import os\ndef f():\n    return os.getuid()\n"
        result = run(slot, code, asserts("assert f() == 0", "assert f() == 1"))
        assert result.outcome is O.FAILED
        assert result.feedback == "AssertionError\nINPUT: f()\nOUTPUT: 0\nEXPECTED: 1"
        sleeper = run(
            slot,
            "import time\ndef f():\n    time.sleep(100)\n",
            asserts("assert f() == 0"),
            timeout_s=0.5,
        )
        assert sleeper.outcome is O.TIMEOUT
    finally:
        slot.close()
