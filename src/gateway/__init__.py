"""The gateway: DICOM in, scheduling, results out. Owns all I/O and state; calls ``ihgamp_core``."""
