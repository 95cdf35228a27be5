"""Reports of a HER2 result: DICOM SR, class-map Segmentation + PNG, FHIR Bundle.

Serialisers of :class:`~ihgamp_core.her2.result.Her2Result` plus the source headers,
built with the same helpers as the HRD reports (:mod:`ihgamp_core.report`):

* **SR** (Comprehensive 3D SR, TID 1500, one measurement group): algorithm
  identification (TID 4019; parameters include the modality path), measurements
  (probability of each score, fraction of tiles per score), qualitative evaluations
  (the score coded with LOINC answer codes LA6111-4 / LA11841-6 / LA11842-4 / LA11843-2,
  the modality path, the missing modality when one is missing, the triage, QC flags) and
  comments (triage text, intended-use statement, the missing-modality note).
* **Segmentation** (BINARY, one segment per score, one pixel per tile) registered to
  the reference slide (the H&E, or the IHC on the IHC-only path), and a PNG of the same
  class map over a thumbnail. The synthesised image is never an output.
* **FHIR**: Device, Observation (LOINC 85319-2 + a local code; value = the score's LOINC
  answer; components: probabilities, path, missing modality, triage, QC flags; AIAST)
  and Provenance in a transaction Bundle.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from highdicom.sr import (
    AlgorithmIdentification,
    Measurement,
    MeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from numpy.typing import NDArray

from .. import __version__
from ..analysis.contract import ModalityPath
from ..report import codes as c
from ..report.context import (
    OutputIds,
    ReportContext,
    SlideHeaders,
    Supersedes,
    derive_output_ids,
)
from ..report.fhir import (
    coded_component,
    coding,
    default_patient_system,
    device_resource,
    observation_frame,
    quantity_component,
    transaction_bundle,
)
from ..report.heatmap import (
    compose_overlay,
    grid_geometry,
    place_on_grid,
    stable_dimension_uids,
)
from ..report.outputs import (
    HeatmapObject,
    Outputs,
    amended_triage,
    bundle_if_patient,
    place_maps,
)
from ..report.sr import add_comments, device_observation_context, measurement_report_sr
from ..report.triage import Triage
from . import codes as h2
from .config import CLASS_LABELS
from .result import Her2Result
from .triage import MISSING_HE_NOTE, MISSING_IHC_NOTE, her2_triage

__all__ = [
    "CLASS_COLOURS",
    "Her2Report",
    "build_her2_bundle",
    "build_her2_reports",
    "build_her2_segmentation",
    "build_her2_sr",
    "class_map_png",
    "her2_output_ids",
    "missing_note",
]

#: PNG colours of the scores 0, 1+, 2+, 3+ (blue, yellow, orange, red).
CLASS_COLOURS = np.array([[49, 130, 189], [255, 221, 87], [253, 141, 60], [215, 25, 28]], np.uint8)
#: Series Numbers of the HER2 outputs, apart from HRD's 9001 (SR) and 9002 (map).
SR_SERIES_NUMBER = 9004
SEG_SERIES_NUMBER = 9003
PatientSystem = Callable[[str | None], str]


def missing_note(result: Her2Result) -> str | None:
    """The missing-modality statement, or None on the dual path."""
    if result.path is ModalityPath.HE_ONLY:
        return MISSING_IHC_NOTE
    if result.path is ModalityPath.IHC_ONLY:
        return MISSING_HE_NOTE
    return None


def her2_output_ids(result: Her2Result) -> OutputIds:
    """Stable identifiers of a HER2 result's outputs (distinct from HRD's)."""
    reference = result.slides[0].info
    study = reference.study_instance_uid or result.case_id
    inputs = [uid for s in result.slides for uid in s.info.sop_instance_uids]
    parameters = f"her2|{result.path}|min_fraction={result.min_fraction}"
    return derive_output_ids(study, result.model.key, parameters, inputs, 1)


def algorithm_parameters(result: Her2Result) -> list[str]:
    """TID 4019 parameters."""
    params = [
        f"config={result.model.config}",
        f"weights={result.model.weights}",
        f"cam={'on' if result.model.use_cam else 'off'}",
        f"modality_path={result.path}",
        f"tiles={result.n_tiles}",
        f"case_rule=highest score with >{result.min_fraction:.0%} of tiles at or above it",
    ]
    if result.slides[0].tile_mpp is not None:
        params.append(f"tile_mpp={result.slides[0].tile_mpp:.4f}")
    if result.registration is not None:
        r = result.registration
        params.append(f"registration_iou={r.iou:.3f};angle_deg={r.angle_deg:.1f}")
    return params


def build_her2_sr(
    result: Her2Result,
    triage: Triage,
    context: ReportContext,
    ids: OutputIds,
    supersedes: Supersedes | None = None,
) -> Any:
    """The SR of one HER2 result (see the module docstring).

    With ``supersedes`` the SR lists the earlier HER2 SR of the same block in its
    Predecessor Documents Sequence.
    """
    m = result.model
    algorithm = AlgorithmIdentification(
        name="IHGAMP HER2", version=m.version[:64], parameters=algorithm_parameters(result)
    )
    measurements = []
    for values, concepts in (
        (result.probabilities, h2.HER2_PROBABILITY),
        (result.tile_fractions, h2.HER2_FRACTION),
    ):
        for label, value in zip(CLASS_LABELS, values or (), strict=False):
            measurements.append(
                Measurement(
                    name=concepts[label], value=value, unit=c.UCUM_NO_UNITS, algorithm_id=algorithm
                )
            )
    score_code = h2.HER2_SCORE_CODES[str(result.score)] if result.score else h2.LOINC_INDETERMINATE
    evaluations = [
        QualitativeEvaluation(h2.HER2_SCORE, score_code),
        QualitativeEvaluation(h2.HER2_PATH, h2.HER2_PATH_CODES[result.path]),
    ]
    if result.ihc_missing:
        evaluations.append(QualitativeEvaluation(h2.HER2_MISSING, h2.HER2_MISSING_CODES["ihc"]))
    if result.he_missing:
        evaluations.append(QualitativeEvaluation(h2.HER2_MISSING, h2.HER2_MISSING_CODES["he"]))
    evaluations.append(QualitativeEvaluation(c.TRIAGE, h2.HER2_TRIAGE_CODES[triage.category]))
    evaluations += [QualitativeEvaluation(c.QC_FLAG, h2.HER2_QC_FLAGS[f]) for f in result.qc_flags]
    bases = [slide.base for slide in context.slides]
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=ids.sr_sop_uid, identifier=f"IHGAMP HER2 {ids.key[:16]}"
        ),
        algorithm_id=algorithm,
        measurements=measurements or None,
        qualitative_evaluations=evaluations,
        source_images=[SourceImageForMeasurementGroup.from_source_image(ds) for ds in bases],
    )
    note = missing_note(result)
    add_comments(group, [triage.text, triage.statement, *([note] if note else [])])
    description = "IHGAMP HER2 estimate (AI)"
    if result.ihc_missing:
        description += " no IHC"
    return measurement_report_sr(
        group,
        h2.HER2_PROCEDURE,
        device_observation_context(m.name, f"{m.name} {m.version}", ids.device_uid, context),
        context,
        ids,
        description + (" DEMO" if m.demo else ""),
        m.name,
        f"ihgamp {__version__}; her2 {m.version}",
        supersedes,
        SR_SERIES_NUMBER,
    )


def _class_grid(result: Her2Result) -> tuple[NDArray[np.uint8], NDArray[np.bool_], float]:
    tiles = result.tiles
    if tiles is None or len(tiles) == 0:
        raise ValueError("the result has no scored tiles")
    reference = result.slides[0]
    labels = (tiles.classes + 1).astype(np.uint8)  # segment numbers 1..4
    grid, scored = place_on_grid(
        tiles.x, tiles.y, tiles.size, reference.width, reference.height, labels, np.uint8
    )
    return grid, scored, tiles.size


def build_her2_segmentation(result: Her2Result, source: Any, series_uid: str, sop_uid: str) -> Any:
    """The tile class map as a DICOM Segmentation registered to the reference slide.

    Parameters
    ----------
    result : Her2Result
        The result, with tiles.
    source : pydicom.dataset.Dataset
        The reference slide's level-0 VOLUME header.
    series_uid, sop_uid : str
        Stable UIDs.
    """
    import highdicom as hd

    grid, _, size = _class_grid(result)
    position, orientation, measures = grid_geometry(source, size)
    m = result.model
    algorithm = hd.AlgorithmIdentificationSequence(
        name="IHGAMP HER2",
        family=hd.sr.CodedConcept("123109", "DCM", "Artificial Intelligence"),
        version=m.version[:64],
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=k + 1,
            segment_label=f"HER2 {label} (AI estimate)",
            segmented_property_category=h2.HER2_SEGMENT_CATEGORY,
            segmented_property_type=h2.HER2_SEGMENT_TYPES[label],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for k, label in enumerate(CLASS_LABELS)
    ]
    tile = 256
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=grid,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=series_uid,
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="IHGAMP pathology gateway",
        manufacturer_model_name=m.name[:64],
        software_versions=f"ihgamp {__version__}; her2 {m.version}"[:64],
        device_serial_number="0",
        content_label="HER2_CLASS_MAP",
        content_description=(
            "Tile-level HER2 score estimate" + (" (DEMO, not for clinical use)" if m.demo else "")
        )[:64],
        pixel_measures=measures,
        plane_orientation=orientation,
        plane_positions=[position],
        tile_pixel_array=True,
        tile_size=(min(tile, grid.shape[0]), min(tile, grid.shape[1])),
        omit_empty_frames=False,
    )
    seg.CodingSchemeIdentificationSequence = [c.coding_scheme_identification()]
    # General Image module, Type 2C: present (empty) when there is no patient orientation,
    # as for a slide in the slide coordinate system; dciodvfy requires it.
    seg.PatientOrientation = ""
    stable_dimension_uids(seg)
    return seg


def class_map_png(thumbnail: NDArray[np.uint8], result: Her2Result) -> bytes:
    """The tile class map over a thumbnail of the reference slide (PNG bytes)."""
    grid, scored, size = _class_grid(result)
    colours = CLASS_COLOURS[np.clip(grid.astype(int) - 1, 0, 3)]
    reference = result.slides[0]
    return compose_overlay(thumbnail, colours, scored, size, reference.width, reference.height)


def build_her2_bundle(
    result: Her2Result,
    triage: Triage,
    context: ReportContext,
    ids: OutputIds,
    patient_system: PatientSystem = default_patient_system,
    issued: dt.datetime | None = None,
    supersedes: Supersedes | None = None,
) -> Any:
    """Device, Observation and Provenance of a HER2 result (see the module docstring).

    With ``supersedes`` the Observation amends the earlier one in place (conditional
    update on its identifier).

    Raises
    ------
    ValueError
        If the study has no Patient ID.
    """
    from fhir.resources.R4B.observation import Observation

    issued = issued or dt.datetime.now(dt.UTC)
    m = result.model
    note = missing_note(result)
    device = device_resource(
        ids,
        m.display_name,
        m.name,
        "AI software: HER2 IHC score estimate from H&E and HER2 IHC whole-slide images",
        m.version,
        [
            ("weights", f"ihgamp-her2/{m.config} {m.weights}"),
            ("configuration", m.config),
            ("channel-attention", "on" if m.use_cam else "off"),
        ],
        m.intended_use,
    )

    def observation(device_url: str) -> Observation:
        frame = observation_frame(
            ids,
            context,
            device_url,
            m.display_name,
            result.created,
            [triage.text, triage.statement, *([note] if note else [])],
            patient_system,
            issued,
            supersedes,
        )
        components: list[dict[str, Any]] = [
            quantity_component(h2.HER2_PROBABILITY[label], value, "1", "probability")
            for label, value in zip(CLASS_LABELS, result.probabilities or (), strict=False)
        ]
        components.append(
            coded_component(h2.HER2_PATH, h2.HER2_PATH_CODES[result.path], str(result.path))
        )
        for missing, flag in (("ihc", result.ihc_missing), ("he", result.he_missing)):
            if flag:
                components.append(coded_component(h2.HER2_MISSING, h2.HER2_MISSING_CODES[missing]))
        components.append(
            coded_component(c.TRIAGE, h2.HER2_TRIAGE_CODES[triage.category], triage.text)
        )
        components += [
            coded_component(c.QC_FLAG, h2.HER2_QC_FLAGS[flag]) for flag in result.qc_flags
        ]
        answer = h2.HER2_SCORE_CODES[str(result.score)] if result.score else h2.LOINC_INDETERMINATE
        value_text = f"HER2 {result.score} (AI estimate)" if result.score else "No result (QC flag)"
        sources = {
            ModalityPath.DUAL: "H&E and HER2 IHC",
            ModalityPath.HE_ONLY: "H&E only (IHC missing)",
            ModalityPath.IHC_ONLY: "HER2 IHC only (H&E missing)",
        }[result.path]
        return Observation.model_validate(
            {
                **frame,
                "code": {
                    "coding": [
                        coding(c.LOINC, h2.LOINC_HER2_IHC, h2.LOINC_HER2_IHC_DISPLAY),
                        coding(
                            c.FHIR_LOCAL,
                            "HER2-EST-IMAGE",
                            "HER2 IHC score, AI estimate from whole-slide images",
                        ),
                    ],
                    "text": "HER2 IHC score: AI estimate (not a pathologist's reading)",
                },
                "method": {
                    "coding": [
                        coding(
                            c.FHIR_LOCAL,
                            f"AI-{result.path}".upper(),
                            f"AI estimate from {sources} whole-slide images",
                        )
                    ],
                    "text": (
                        f"Image-based AI estimate ({m.display_name}) from {sources}; not an "
                        "immunohistochemistry reading by a pathologist; no amplification "
                        "assessment"
                    ),
                },
                "valueCodeableConcept": {
                    "coding": [
                        coding(c.LOINC, answer.value, answer.meaning),
                        coding(
                            c.FHIR_LOCAL,
                            str(result.call),
                            value_text,
                        ),
                    ],
                    "text": value_text,
                },
                "component": components,
            }
        )

    return transaction_bundle(
        ids,
        device,
        observation,
        context,
        "HER2 IHC score estimation from whole-slide images (IHGAMP HER2)",
        issued,
        supersedes,
    )


#: Everything produced for one HER2 result.
Her2Report = Outputs[Her2Result]


def build_her2_reports(
    result: Her2Result,
    context: ReportContext,
    thumbnails: Mapping[str, NDArray[np.uint8]] | None = None,
    patient_system: PatientSystem = default_patient_system,
    supersedes: Supersedes | None = None,
) -> Her2Report:
    """Triage, SR, class-map Segmentation (+ PNG) and FHIR Bundle of a HER2 result.

    ``context`` holds the headers of the result's slides, reference slide first.
    ``supersedes`` names the earlier result this one replaces (the triage text says so,
    the SR references it, the Observation amends it).
    """
    ids = her2_output_ids(result)
    triage = amended_triage(her2_triage(result, context.histology), supersedes)
    sr = build_her2_sr(result, triage, context, ids, supersedes)
    notes: list[str] = list(context.header_notes)

    def class_map(index: int, headers: SlideHeaders) -> HeatmapObject:
        seg = build_her2_segmentation(
            result, headers.spatial_base, ids.pm_series_uid, ids.pm_sop_uids[index]
        )
        thumb = (thumbnails or {}).get(headers.series_uid)
        png = class_map_png(thumb, result) if thumb is not None else None
        return HeatmapObject(headers.series_uid, seg, png)

    # One class map, on the reference slide (H&E when present), when tiles were scored.
    scored = result.tiles is not None and len(result.tiles) > 0
    mapped = [(0, result.slides[0].info.series_instance_uid)] if scored else []
    heatmaps = place_maps(context, mapped, class_map, notes)
    bundle = bundle_if_patient(
        context,
        lambda: build_her2_bundle(
            result, triage, context, ids, patient_system, supersedes=supersedes
        ),
        notes,
    )
    return Her2Report(result, triage, ids, sr, heatmaps, bundle, tuple(notes))
