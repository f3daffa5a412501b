"""The pure domain: decisions with no I/O; dates and times are always passed in."""
