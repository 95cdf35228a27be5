"""``python -m gateway.cli`` runs the ``ihgamp`` command."""

from .app import main

main()
