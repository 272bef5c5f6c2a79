"""``persd submit FILE.jsonl``: a batch client for POST /v1/tasks.

Each line is one task (the body of a single-task POST). Lines without an ``idempotency_key`` get
one made of the file's content hash and the line number, so running the same file again after a
crash or a network error creates nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

RETRYABLE = {429, 502, 503, 504}


@dataclass
class LineResult:
    line: int
    task_id: int | None = None
    created: bool = False
    error: str | None = None


@dataclass
class SubmitReport:
    results: list[LineResult] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for r in self.results if r.created)

    @property
    def existing(self) -> int:
        return sum(1 for r in self.results if r.task_id is not None and not r.created)

    @property
    def failed(self) -> list[LineResult]:
        return [r for r in self.results if r.error is not None]


def read_tasks(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[LineResult]]:
    """(line number, task) pairs and the lines that are not JSON objects."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    tasks: list[tuple[int, dict[str, Any]]] = []
    bad: list[LineResult] = []
    for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            task = json.loads(raw)
        except json.JSONDecodeError as exc:
            bad.append(LineResult(number, error=f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(task, dict):
            bad.append(LineResult(number, error="not a JSON object"))
            continue
        task.setdefault("idempotency_key", f"persd-submit:{digest}:{number}")
        tasks.append((number, task))
    return tasks, bad


def _error(response: httpx.Response) -> str:
    try:
        return f"{response.status_code} {response.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.text[:300]}"


class Client:
    def __init__(self, url: str, key: str, timeout: float = 30.0, retries: int = 3) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
        )
        self.retries = retries

    def close(self) -> None:
        self.http.close()

    def post_tasks(self, body: dict[str, Any]) -> httpx.Response:
        """POST with retries on connection errors and 429/5xx-gateway answers; safe because every
        task carries an idempotency key."""
        for attempt in range(self.retries + 1):
            try:
                response = self.http.post("/v1/tasks", json=body)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if response.status_code not in RETRYABLE or attempt == self.retries:
                    return response
            time.sleep(min(2**attempt * 0.5, 8))
        raise AssertionError("unreachable")

    def submit_batch(self, batch: list[tuple[int, dict[str, Any]]]) -> list[LineResult]:
        response = self.post_tasks({"tasks": [task for _, task in batch]})
        if response.status_code in (200, 201):
            return [
                LineResult(number, task_id=t["id"], created=t["created"])
                for (number, _), t in zip(batch, response.json()["tasks"], strict=True)
            ]
        if response.status_code != 422 or len(batch) == 1:
            return [LineResult(number, error=_error(response)) for number, _ in batch]
        # A batch is all or nothing; find the bad lines by sending the tasks one by one.
        results = []
        for number, task in batch:
            single = self.post_tasks(task)
            if single.status_code in (200, 201):
                body = single.json()
                results.append(LineResult(number, task_id=body["id"], created=body["created"]))
            else:
                results.append(LineResult(number, error=_error(single)))
        return results


def submit_file(
    path: Path, url: str, key: str, batch_size: int = 100, progress: bool = True
) -> SubmitReport:
    from tqdm import tqdm

    tasks, bad = read_tasks(path)
    report = SubmitReport(results=list(bad))
    client = Client(url, key)
    try:
        with tqdm(total=len(tasks), unit="task", disable=not progress, desc="submitting") as bar:
            for start in range(0, len(tasks), batch_size):
                batch = tasks[start : start + batch_size]
                report.results.extend(client.submit_batch(batch))
                bar.update(len(batch))
    finally:
        client.close()
    report.results.sort(key=lambda r: r.line)
    return report
