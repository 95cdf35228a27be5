"""The local Orthanc runner (shared with the demo, in ``gateway.pacs_local``)."""

from gateway.pacs_local import DICOMWEB_PLUGIN, Orthanc, orthanc, orthanc_available

__all__ = ["DICOMWEB_PLUGIN", "Orthanc", "orthanc", "orthanc_available"]
