"""The vLLM client lives in :mod:`shared.vllm_client` (the trainer's gate uses it too, and must
not import the student service); this name stays for existing imports."""

from shared.vllm_client import (
    Completion,
    ModelNotLoaded,
    StudentUnavailable,
    VllmClient,
    VllmRejected,
    ensure_loaded,
)

__all__ = [
    "Completion",
    "ModelNotLoaded",
    "StudentUnavailable",
    "VllmClient",
    "VllmRejected",
    "ensure_loaded",
]
