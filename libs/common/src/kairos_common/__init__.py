"""Code shared by the Kairos services: settings, logging, errors, gRPC and NATS plumbing.

This package is imported, never run.
"""
