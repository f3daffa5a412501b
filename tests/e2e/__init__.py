"""End-to-end tests: the CLI in a subprocess against real servers."""
