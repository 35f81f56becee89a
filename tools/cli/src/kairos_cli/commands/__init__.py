"""The `kairos` sub-commands, one module per group."""
