"""Wire models of the REST API (request and response bodies), apart from the ORM tables."""
