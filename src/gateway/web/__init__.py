"""The HTTP service: health, metrics, status page, API, read-only FHIR endpoint."""

from .app import FHIR_JSON, create_app
from .server import HttpServer

__all__ = ["FHIR_JSON", "HttpServer", "create_app"]
