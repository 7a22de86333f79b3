"""`python -m connector` is `enrich`."""

from connector.cli import main

main()
