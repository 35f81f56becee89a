"""Adapters: the database, encryption and other outside things the posts service uses."""
