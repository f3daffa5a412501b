"""The ``cobro`` command, one module per group of commands."""

from cobro.cli.app import main

__all__ = ["main"]
