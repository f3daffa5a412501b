"""``python -m cobro``."""

from cobro.cli import main

main()
