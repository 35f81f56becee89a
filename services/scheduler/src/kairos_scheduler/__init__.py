"""The Kairos scheduler: claims due targets through DispatchService and emits due events to NATS."""
