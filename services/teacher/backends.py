"""Who answers a rectify request: an OpenAI-compatible API, the task's reference, or a replay.

Every backend returns the same :class:`Answer` (the prompt as it would be sent, the raw reply,
tokens, latency), so storing, validating and accounting never care which one spoke. The offline
backends cost nothing and are deterministic: asking them again gives the same answer, so a
rejected answer from them is not retried in a later round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from services.teacher import client as api
from services.teacher import replay
from services.teacher.errors import TeacherMisconfigured, TeacherRejectedRequest, TeacherUnavailable
from services.teacher.prompt import Messages, fenced, rectify_messages, solve_messages
from services.teacher.settings import BackendName, TeacherSettings
from shared.enums import TeacherBackend
from shared.prompts import extract_code

NOT_RECORDED = "# (the teacher's own solution is not recorded in the replay file)"


class NoTeacher(Exception):
    """No backend can answer this task now; the task waits in ``needs_teacher``."""


@dataclass(frozen=True)
class Job:
    description: str
    header: str
    entry_point: str
    reference: str | None  # a whole program
    incorrect_code: str
    error: str
    round: int
    task_key: str
    own_solution: str | None = None  # the teacher's turn-(a) answer from an earlier round


@dataclass(frozen=True)
class Answer:
    backend: TeacherBackend
    model: str
    messages: Messages
    reply: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    # Set when the call failed in a way another identical call would not fix (HTTP 400, an
    # unreadable reply), or after tokens were already spent on the own-solution call: the
    # refinement is then stored as rejected, with whatever was spent.
    error: str | None = None


class Backend(Protocol):
    name: TeacherBackend
    deterministic: bool

    def answer(self, job: Job) -> Answer: ...


class ReferenceBackend:
    name = TeacherBackend.REFERENCE
    deterministic = True

    def answer(self, job: Job) -> Answer:
        if not job.reference:
            raise NoTeacher("TEACHER_BACKEND=reference but the task has no reference solution")
        messages = rectify_messages(
            job.description, job.header, job.reference, job.incorrect_code, job.error
        )
        return Answer(self.name, "reference", messages, fenced(job.reference))


class ReplayBackend:
    name = TeacherBackend.REPLAY
    deterministic = True

    def __init__(self, book: replay.ReplayBook, source: str) -> None:
        self.book = book
        self.source = source

    def has(self, job: Job) -> bool:
        return self.book.find(job.task_key, job.round) is not None

    def answer(self, job: Job) -> Answer:
        row = self.book.find(job.task_key, job.round)
        if row is None:
            raise NoTeacher(f"replay file {self.source} has no reply for task key {job.task_key}")
        solution = job.reference or job.own_solution or NOT_RECORDED
        messages = rectify_messages(
            job.description, job.header, solution, job.incorrect_code, job.error
        )
        return Answer(self.name, f"replay:{row.model}", messages, row.reply)


class OpenAIBackend:
    name = TeacherBackend.OPENAI
    deterministic = False

    def __init__(self, settings: TeacherSettings, policy: api.RetryPolicy | None = None) -> None:
        self.s = settings
        self.policy = policy or api.RetryPolicy.from_settings(settings)

    def reserve_tokens(self, job: Job) -> int:
        """An upper bound of the tokens this job may spend, reserved against the daily cap
        before calling: byte-level BPE never yields more tokens than bytes."""
        solution = job.reference or job.own_solution or ""
        messages = rectify_messages(
            job.description, job.header, solution, job.incorrect_code, job.error
        )
        calls = [messages]
        if not (job.reference or job.own_solution):
            calls.insert(0, solve_messages(job.description, job.header))
            # The own solution becomes part of the second prompt: at most one reply long.
            calls[1] = calls[1] + [{"content": "x" * self.s.max_tokens}]
        total = 0
        for call in calls:
            prompt = sum(len(str(m.get("content", "")).encode()) for m in call)
            total += prompt + self.s.reserve_overhead_tokens + self.s.max_tokens
        return total

    def _chat(self, messages: Messages) -> api.Completion:
        secret = self.s.api_key.get_secret_value() if self.s.api_key else None
        return api.chat(
            api.client_for(self.s),
            model=self.s.model,
            messages=messages,
            temperature=self.s.temperature,
            max_tokens=self.s.max_tokens,
            policy=self.policy,
            secret=secret,
        )

    def answer(self, job: Job) -> Answer:
        """Raises TeacherUnavailable / TeacherMisconfigured only when nothing was spent, so the
        task can wait and retry the same round for free."""
        tokens_in = tokens_out = 0
        latency = 0.0
        solution = job.reference or job.own_solution
        if not solution:
            try:
                own = self._chat(solve_messages(job.description, job.header))
            except TeacherRejectedRequest as exc:
                messages = solve_messages(job.description, job.header)
                return Answer(self.name, self.s.model, messages, "", error=exc.message)
            tokens_in, tokens_out, latency = own.tokens_in, own.tokens_out, own.latency_ms
            solution = extract_code(own.text, job.header, job.entry_point)
        messages = rectify_messages(
            job.description, job.header, solution, job.incorrect_code, job.error
        )
        try:
            reply = self._chat(messages)
        except (TeacherUnavailable, TeacherMisconfigured) as exc:
            if not (tokens_in or tokens_out):
                raise
            return Answer(
                self.name, self.s.model, messages, "", tokens_in, tokens_out, latency, exc.message
            )
        except TeacherRejectedRequest as exc:
            return Answer(
                self.name, self.s.model, messages, "", tokens_in, tokens_out, latency, exc.message
            )
        return Answer(
            self.name,
            self.s.model,
            messages,
            reply.text,
            tokens_in + reply.tokens_in,
            tokens_out + reply.tokens_out,
            latency + reply.latency_ms,
        )


def choose(settings: TeacherSettings, job: Job, **openai_kw: Any) -> Backend:
    """The backend for this job, or NoTeacher saying what is missing."""
    kind = settings.backend
    if kind is BackendName.OPENAI or (kind is BackendName.AUTO and settings.uses_api):
        return OpenAIBackend(settings, **openai_kw)
    if kind is BackendName.REFERENCE:
        return ReferenceBackend()
    book = replay.load(settings.replay_file) if settings.replay_file else None
    if kind is BackendName.REPLAY:
        assert book is not None and settings.replay_file is not None
        return ReplayBackend(book, str(settings.replay_file))
    if job.reference:
        return ReferenceBackend()
    if book is not None and settings.replay_file is not None:
        candidate = ReplayBackend(book, str(settings.replay_file))
        if candidate.has(job):
            return candidate
    raise NoTeacher(
        "no teacher for this task: it has no reference solution and neither TEACHER_API_KEY nor"
        " TEACHER_BASE_URL is set"
        + (" (nor a reply in TEACHER_REPLAY_FILE)" if book is not None else "")
    )
