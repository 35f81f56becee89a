"""The Kairos publisher: consumes due events from NATS and calls the platforms over HTTP."""
