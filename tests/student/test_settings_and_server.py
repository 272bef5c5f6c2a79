from __future__ import annotations

import sys
from pathlib import Path

import pytest

from services.student.server import runtime_dir, server_argv, server_env
from shared.config import load
from shared.errors import ConfigError
from shared.student_settings import StudentSettings


def test_urls_are_split_and_trimmed(monkeypatch) -> None:
    monkeypatch.setenv("STUDENT_VLLM_URL", " http://a:1/ ,http://b:2")
    assert load(StudentSettings).urls == ["http://a:1", "http://b:2"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "STUDENT_VLLM_URL: needs at least one URL, e.g. http://127.0.0.1:8100"),
        ("http://a:1,ftp://b", "STUDENT_VLLM_URL: 'ftp://b' is not an http(s) URL"),
    ],
)
def test_bad_url_is_named(monkeypatch, value: str, message: str) -> None:
    monkeypatch.setenv("STUDENT_VLLM_URL", value)
    with pytest.raises(ConfigError) as err:
        load(StudentSettings)
    assert err.value.message == f"invalid configuration: {message}"


def test_paper_sampling_defaults(monkeypatch) -> None:
    for var in ("STUDENT_TEMPERATURE", "STUDENT_TOP_P", "STUDENT_STEPS"):
        monkeypatch.delenv(var, raising=False)
    s = load(StudentSettings)
    assert (s.temperature, s.top_p, s.steps) == (0.3, 0.95, 3)


def test_default_model_is_the_tiny_student_under_the_data_dir(monkeypatch, tmp_path) -> None:
    from shared.db import reset_caches

    monkeypatch.setenv("PERSD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("STUDENT_MODEL", raising=False)
    reset_caches()
    try:
        assert load(StudentSettings).model_path == str(tmp_path / "models" / "tiny-student")
    finally:
        monkeypatch.undo()
        reset_caches()


def test_server_command_and_environment(tmp_path) -> None:
    s = StudentSettings(model="/models/m", port=9001, host="0.0.0.0", extra_args="--foo 'a b'")
    assert server_argv(s) == [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", "/models/m", "--host", "0.0.0.0", "--port", "9001",
        "--enable-lora", "--max-lora-rank", "16", "--max-loras", "2",
        "--max-model-len", "2048", "--dtype", "float32", "--seed", "0",
        "--disable-uvicorn-access-log", "--distributed-executor-backend", "uni",
        "--foo", "a b",
    ]  # fmt: skip
    env = server_env(s, tmp_path)
    data = tmp_path.resolve()
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["VLLM_CACHE_ROOT"] == str(data / "cache" / "vllm")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(data / "cache" / "torchinductor")
    assert env["VLLM_RPC_BASE_PATH"] == env["TMPDIR"] == str(runtime_dir(tmp_path, 9001))
    assert "HF_HUB_OFFLINE" not in env or env["HF_HUB_OFFLINE"] == "1"
    assert Path(env["VLLM_RPC_BASE_PATH"]).is_dir()
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # else vLLM's CPU path ignores "uni"


def test_mp_executor_is_vllms_own_default(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    s = StudentSettings(model="/models/m", executor_backend="mp")
    assert server_argv(s)[-2:] == ["--distributed-executor-backend", "mp"]
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in server_env(s, tmp_path)


def test_local_model_forces_offline_hub(tmp_path) -> None:
    s = StudentSettings(model=str(tmp_path), port=9002)
    assert server_env(s, tmp_path)["HF_HUB_OFFLINE"] == "1"


def test_the_server_runs_the_model_in_its_engine_core(vllm_server) -> None:
    """vLLM's CPU platform silently turns "uni" into "mp"; the environment above prevents it.
    With mp a VLLM::Worker process would sit under the engine core, busy-polling a core."""
    import psutil

    titles = [
        " ".join(p.cmdline()) for p in psutil.Process(vllm_server.proc.pid).children(recursive=True)
    ]
    assert any(t.startswith("VLLM::EngineCore") for t in titles), titles
    assert not any(t.startswith("VLLM::Worker") for t in titles), titles
