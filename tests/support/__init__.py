"""Test rig: real NATS, throwaway PostgreSQL databases, the services in or out of process."""
