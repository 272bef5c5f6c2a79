"""The teacher service."""
