"""The posts domain: rules and types that import nothing from grpc, SQLAlchemy, NATS or httpx."""
