"""Command-line interface (``ihgamp``): one module per command group."""
