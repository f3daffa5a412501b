"""``python -m cobro``."""

from cobro.cli.app import main

main()
