"""`python -m seg4seg_cli` runs the command-line interface."""

from seg4seg_cli.cli import main

main()
