"""Use cases of the posts service: one handler per command, each in one unit of work."""
