"""persd's common library: configuration, database, models, message schemas, queues."""
