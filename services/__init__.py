"""The persd services, one package each."""
