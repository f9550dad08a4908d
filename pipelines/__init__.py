"""One module per stage, plain Python, callable from the CLI, from tests and from an asset."""
