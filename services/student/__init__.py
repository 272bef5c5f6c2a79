"""The student service."""
