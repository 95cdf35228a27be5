"""HRD's DICOM Structured Report: a TID 1500 Measurement Report in a Comprehensive 3D SR.

Content tree (built with highdicom)::

    Imaging Measurement Report (TID 1500)
    ├── Language, observer context: the algorithm as a device observer
    ├── Subject context: specimen (UID, identifier, container = glass slide)
    ├── Procedure reported: HRD estimation from H&E whole-slide images (99IHGAMP)
    ├── Image library: the level-0 image of each slide
    └── Imaging Measurements
        └── Measurement Group (TID 1501), tracking id = the result key
            ├── Algorithm identification (TID 4019): name, version, parameters
            ├── Source images: the slides
            ├── Measurements: HRD probability (1), continuous score ({score}),
            │   operating threshold (1)
            ├── Qualitative evaluations: HRD call, triage recommendation, QC flags
            └── Comments (TEXT): the triage text and the intended-use statement

The SR takes the slides' Study Instance UID and copies their patient and study
modules (highdicom does this from the evidence); it is a new series with UIDs from
:func:`~ihgamp_core.report.context.output_ids`. An SR that replaces an earlier result
of the study (scored on partial input) lists that SR in its Predecessor Documents
Sequence.
"""

from __future__ import annotations

from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    Measurement,
    MeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)

from .. import __version__
from ..report import codes as c
from ..report.context import OutputIds, ReportContext, Supersedes
from ..report.sr import add_comments, device_observation_context, measurement_report_sr
from ..report.triage import Triage
from . import codes as hc
from .result import CaseResult

__all__ = ["SR_SERIES_NUMBER", "algorithm_parameters", "build_sr"]

#: Series Number of the HRD SR (its map: 9002, ``heatmap.py``; HER2's: ``her2/reports.py``).
SR_SERIES_NUMBER = 9001


def algorithm_parameters(result: CaseResult) -> list[str]:
    """The algorithm parameters recorded in TID 4019.

    Backbone, tiling, threshold, and the arithmetic the embeddings were computed with
    (``precision``: int8 approximates fp32 within the bound in docs/benchmarks.md).
    """
    t = result.tiling
    return [
        f"backbone={result.model.backbone.architecture}",
        f"backbone_weights={result.model.backbone.weights}",
        f"preset={result.model.preset}",
        f"tile_px={t.get('tile_px')}",
        f"target_mpp={t.get('target_mpp')}",
        f"min_tissue_fraction={t.get('min_tissue_fraction')}",
        f"max_tiles={t.get('max_tiles')}",
        f"operating_threshold={result.threshold:.6f}",
        f"endpoint={result.model.endpoint}",
        f"precision={result.runtime.precision}",
        f"pipeline={result.runtime.pipeline}",
    ]


def build_sr(
    result: CaseResult,
    triage: Triage,
    context: ReportContext,
    ids: OutputIds,
    supersedes: Supersedes | None = None,
) -> Comprehensive3DSR:
    """Build the SR for one scored case.

    Parameters
    ----------
    result : CaseResult
        The engine's result.
    triage : Triage
        The triage outcome.
    context : ReportContext
        Source headers of the case's slides.
    ids : OutputIds
        Stable UIDs.
    supersedes : Supersedes, optional
        The earlier SR of the study this one replaces (its predecessor).

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        A valid SR (validated by highdicom on construction).
    """
    algorithm = AlgorithmIdentification(
        name="IHGAMP HRD",
        version=result.model.head_version[:64],
        parameters=algorithm_parameters(result),
    )
    measurements = [
        Measurement(
            name=hc.OPERATING_THRESHOLD,
            value=result.threshold,
            unit=c.UCUM_NO_UNITS,
            algorithm_id=algorithm,
        ),
    ]
    if result.probability is not None and result.score is not None:
        measurements[:0] = [
            Measurement(
                name=hc.HRD_PROBABILITY,
                value=result.probability,
                unit=c.UCUM_NO_UNITS,
                algorithm_id=algorithm,
            ),
            Measurement(
                name=hc.HRD_SCORE, value=result.score, unit=c.UCUM_SCORE, algorithm_id=algorithm
            ),
        ]
    evaluations = [
        QualitativeEvaluation(hc.HRD_CALL, hc.CALL_CODES[result.call]),
        QualitativeEvaluation(c.TRIAGE, hc.TRIAGE_CODES[triage.category]),
        *(QualitativeEvaluation(c.QC_FLAG, c.QC_FLAGS[flag]) for flag in result.qc_flags),
    ]
    bases = [slide.base for slide in context.slides]
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=ids.sr_sop_uid, identifier=f"IHGAMP HRD {ids.key[:16]}"
        ),
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[SourceImageForMeasurementGroup.from_source_image(ds) for ds in bases],
    )
    add_comments(group, (triage.text, triage.statement))
    m = result.model
    return measurement_report_sr(
        group,
        hc.PROCEDURE,
        device_observation_context(
            m.head_name, f"{m.head_name} {m.head_version}", ids.device_uid, context
        ),
        context,
        ids,
        "IHGAMP HRD estimate (AI)" + (" DEMO" if m.demo else ""),
        m.head_name,
        f"ihgamp {__version__}; head {m.head_version}",
        supersedes,
        SR_SERIES_NUMBER,
    )
