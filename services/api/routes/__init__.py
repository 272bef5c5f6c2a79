"""HTTP edges: parse the request, call ``services.api.serving``, shape the response."""
