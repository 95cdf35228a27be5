"""Fixtures of the receive tests (defined in support.listener, shared with other tests)."""

from support.listener import listener, listeners, pki  # noqa: F401 - pytest finds fixtures here
