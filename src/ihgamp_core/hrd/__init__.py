"""HRD from H&E morphology (IHGAMP): the analysis' own folder (its declaration so far).

The engine (:mod:`ihgamp_core.scoring`), result (:mod:`ihgamp_core.result`), reports
(:mod:`ihgamp_core.report`) and contract adapter (:mod:`ihgamp_core.analysis.hrd`) move
here next; :mod:`.spec` is importable without the model (routing reads it).
"""
