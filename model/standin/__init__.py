"""The procedural stand-in: synthetic heads, bodies, their appearance and landmarks, written by
`pipelines.demo_data` in the real datasets' formats (the readers never know the difference)."""
