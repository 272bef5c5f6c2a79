"""The API's logic as plain functions over a SQLAlchemy session: callable and testable without
HTTP. Routes open the transaction and call these."""
