// Builds the configured authenticators by type. Each type lives in its own file.
import type { AuthenticatorConfig } from '../../config/schema.js';
import type { Engine } from '../../engine/types.js';
import { createBasicAuthenticator } from './basic.js';
import { createCookieAuthenticator } from './cookie.js';
import { createJwtAuthenticator } from './jwt.js';
import { createMtlsAuthenticator } from './mtls.js';
import { createTicketAuthenticator } from './ticket.js';
import type { Authenticator } from './types.js';
import { createWebhookAuthenticator } from './webhook.js';

/** What authenticators may need from the gateway. */
export interface AuthenticatorDeps {
  readonly engine: Engine;
  /** Operational detail that must not reach the client (a webhook's deny reason, a JWKS fetch error). */
  readonly debug: (fields: Record<string, unknown>, message: string) => void;
}

/** Creates one authenticator from its config; throws (naming it) when it cannot be built. */
export function createAuthenticator(
  name: string,
  config: AuthenticatorConfig,
  deps: AuthenticatorDeps,
): Authenticator {
  switch (config.type) {
    case 'jwt':
      return createJwtAuthenticator(name, config, {
        onJwksError: (err) =>
          deps.debug({ event: 'jwks', authenticator: name, err: err.message }, 'JWKS fetch failed'),
      });
    case 'mtls':
      return createMtlsAuthenticator(name, config);
    case 'ticket':
      return createTicketAuthenticator(name, config, deps.engine);
    case 'cookie':
      return createCookieAuthenticator(name, config);
    case 'basic':
      return createBasicAuthenticator(name, config);
    case 'webhook':
      return createWebhookAuthenticator(name, config, { debug: deps.debug });
    default:
      return config satisfies never;
  }
}
