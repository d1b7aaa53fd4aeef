// Per-route JSON Schema (routes[].schema): every text message must parse (within the depth
// limit) and satisfy the schema; binary messages are refused on such a route (1003). There is no
// in-band error channel on echo/upstream routes, so a violation closes the connection.
import { compileSchemaFile } from '../config/json-schema.js';
import { checkJson } from '../core/json.js';
import type { Target } from './session.js';

export { compileSchemaFile };

/** Wraps a target so only schema-valid JSON text reaches it; its lifecycle hooks are kept. */
export function schemaTarget(inner: Target, validate: (value: unknown) => boolean, maxDepth: number): Target {
  return {
    ...(inner.prepare
      ? { prepare: (context) => inner.prepare?.(context) as ReturnType<NonNullable<Target['prepare']>> }
      : {}),
    ...(inner.onOpen ? { onOpen: (session, prepared) => inner.onOpen?.(session, prepared) } : {}),
    ...(inner.onClose ? { onClose: (session) => inner.onClose?.(session) } : {}),
    onMessage(session, data, isBinary) {
      if (isBinary) {
        session.close('UNSUPPORTED_DATA');
        return;
      }
      const verdict = checkJson(data, maxDepth, validate);
      if (verdict.ok) inner.onMessage(session, data, isBinary);
      else session.close(verdict.code);
    },
  };
}
