"""Wire schemas (pydantic): queue messages, test suites, API bodies. Kept apart from the ORM."""
