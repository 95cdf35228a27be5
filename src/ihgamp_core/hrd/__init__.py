"""HRD from H&E morphology (IHGAMP): the analysis' own folder.

:mod:`.spec` (name and applicability; importable without the model, routing reads it),
:mod:`.engine` (backbone + head over a case's tiles), :mod:`.result` (the case result),
:mod:`.analysis` (the contract's adapter). Its reports are built from the shared kit of
:mod:`ihgamp_core.report`.
"""
