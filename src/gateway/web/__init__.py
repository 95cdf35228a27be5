"""The HTTP service: health, metrics, status page, API, read-only FHIR endpoint."""

from .app import FHIR_JSON, create_app
from .auth import TokenRegistry
from .server import HttpLimits, HttpServer

__all__ = ["FHIR_JSON", "HttpLimits", "HttpServer", "TokenRegistry", "create_app"]
