"""Kairos benchmarks: burst, steady, api and scale scenarios, with a BullMQ baseline."""
