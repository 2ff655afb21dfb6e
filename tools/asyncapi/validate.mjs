// Parses an AsyncAPI document with the official parser (Avro payloads included) and
// prints every diagnostic; exits 1 on any error, so a test can fail on it.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";
import { AvroSchemaParser } from "@asyncapi/avro-schema-parser";

const path = process.argv[2];
const parser = new Parser();
parser.registerSchemaParser(AvroSchemaParser());
const { document, diagnostics } = await parser.parse(readFileSync(path, "utf8"), { source: path });
let errors = 0;
for (const d of diagnostics) {
  const level = ["error", "warning", "info", "hint"][d.severity] ?? String(d.severity);
  if (d.severity === 0) errors += 1;
  console.log(`${level} ${d.code} ${d.path.join(".")}: ${d.message}`);
}
if (!document || errors) {
  console.log(`invalid: ${errors} error(s)`);
  process.exit(1);
}
console.log(`valid: ${document.channels().length} channels, ${document.allSchemas().length} schemas`);
