"""The student's settings live in :mod:`shared.student_settings` (the trainer and the API read
them too, and must not import the student service); this name stays for existing imports."""

from shared.student_settings import StudentSettings, default_tiny_student_dir, get_student_settings

__all__ = ["StudentSettings", "default_tiny_student_dir", "get_student_settings"]
