// JSON Schema files (routes[].schema, broker channel schemas), compiled the same way by
// `config check` and by the gateway, so check refuses exactly what serve refuses.
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';

/** Compiles a schema file into a validator; throws with the file named when it is invalid. */
export function compileSchemaFile(path: string): (value: unknown) => boolean {
  let schema: unknown;
  try {
    schema = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`schema ${path}: ${(err as Error).message.split('\n')[0]}`);
  }
  // strict mode rejects unknown keywords, so a typo in the schema cannot silently allow everything.
  const ajv = new Ajv({ strict: true, allErrors: false, validateFormats: false });
  try {
    return ajv.compile(schema as object);
  } catch (err) {
    throw new Error(`schema ${path}: ${(err as Error).message}`);
  }
}
