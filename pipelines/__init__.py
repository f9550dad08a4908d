"""Stages as plain Python, callable from the CLI, tests and assets: settings, demo_data, ingest, cli."""
