"""The Kairos posts service: owns the database and serves the public and dispatch gRPC APIs."""
