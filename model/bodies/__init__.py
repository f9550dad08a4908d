"""model bodies."""
