"""A small FHIR server for tests, run as a separate process.

It stores resources in memory and implements what the gateway's dispatch uses: a
transaction Bundle at the base URL with conditional create (``ifNoneExist`` on
``identifier`` or ``_tag``), reference rewriting of ``urn:uuid`` full URLs, read and
search by identifier. ``POST /_admin/mode`` makes it answer 500 or hang, to test
retries; ``GET /_admin/counts`` reports stored resources per type.

    python -m support.fhir_server --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

STORE: dict[str, dict[str, dict[str, Any]]] = {}
STATE = {"mode": "ok", "requests": 0}
app = FastAPI()


def _matches(resource: dict[str, Any], condition: str) -> bool:
    key, _, value = condition.partition("=")
    system, _, code = value.partition("|")
    if key == "identifier":
        return any(
            i.get("system") == system and i.get("value") == code
            for i in resource.get("identifier", [])
        )
    if key == "_tag":
        return any(
            t.get("system") == system and t.get("code") == code
            for t in resource.get("meta", {}).get("tag", [])
        )
    raise ValueError(f"unsupported condition {condition}")


def _rewrite(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                mapping.get(v, v)
                if k == "reference" and isinstance(v, str)
                else _rewrite(v, mapping)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v, mapping) for v in node]
    return node


@app.post("/_admin/mode")
async def set_mode(request: Request) -> dict[str, Any]:
    STATE["mode"] = (await request.json())["mode"]
    return STATE


@app.get("/_admin/counts")
def counts() -> dict[str, int]:
    return {kind: len(items) for kind, items in STORE.items()}


@app.post("/")
async def transaction(request: Request) -> JSONResponse:
    STATE["requests"] = int(STATE["requests"]) + 1
    if STATE["mode"] == "error500":
        return JSONResponse({"resourceType": "OperationOutcome"}, status_code=500)
    if STATE["mode"] == "hang":
        await asyncio.sleep(120)
    bundle = await request.json()
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        return JSONResponse({"resourceType": "OperationOutcome"}, status_code=400)
    mapping: dict[str, str] = {}
    plan = []
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        kind = resource["resourceType"]
        request_ = entry.get("request", {})
        update = request_.get("method") == "PUT"
        # Conditional create (POST + ifNoneExist) or conditional update (PUT Kind?query).
        condition = request_.get("url", "").partition("?")[2] if update else None
        condition = condition or request_.get("ifNoneExist")
        existing = None
        if condition:
            existing = next(
                (rid for rid, r in STORE.get(kind, {}).items() if _matches(r, condition)), None
            )
        rid = existing or uuid.uuid4().hex
        mapping[entry["fullUrl"]] = f"{kind}/{rid}"
        plan.append((kind, rid, existing is None, update, resource))
    responses = []
    for kind, rid, create, update, resource in plan:
        if create or update:
            stored = _rewrite(resource, mapping)
            stored["id"] = rid
            STORE.setdefault(kind, {})[rid] = stored
        responses.append(
            {
                "response": {
                    "status": "201 Created" if create else "200 OK",
                    "location": f"{kind}/{rid}",
                }
            }
        )
    return JSONResponse(
        {"resourceType": "Bundle", "type": "transaction-response", "entry": responses},
        media_type="application/fhir+json",
    )


@app.get("/{kind}/{rid}")
def read(kind: str, rid: str) -> JSONResponse:
    resource = STORE.get(kind, {}).get(rid)
    if resource is None:
        return JSONResponse({"resourceType": "OperationOutcome"}, status_code=404)
    return JSONResponse(resource, media_type="application/fhir+json")


@app.get("/{kind}")
def search(kind: str, identifier: str | None = None) -> JSONResponse:
    found = [
        r
        for r in STORE.get(kind, {}).values()
        if identifier is None or _matches(r, f"identifier={identifier}")
    ]
    return JSONResponse(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"resource": r} for r in found],
        },
        media_type="application/fhir+json",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
