"""Reading whole-slide images.

One interface over DICOM WSI (wsidicom) and vendor files (OpenSlide).
"""

from .base import LevelInfo, Slide, SlideInfo
from .dicom import DicomSlide
from .levels import LevelChoice, choose_level, choose_thumbnail_level
from .opener import VL_WSI_SOP_CLASS, SlideSource, discover_slides, open_slide
from .vendor import VendorSlide

__all__ = [
    "VL_WSI_SOP_CLASS",
    "DicomSlide",
    "LevelChoice",
    "LevelInfo",
    "Slide",
    "SlideInfo",
    "SlideSource",
    "VendorSlide",
    "choose_level",
    "choose_thumbnail_level",
    "discover_slides",
    "open_slide",
]
