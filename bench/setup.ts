// What a run needs before any server starts, made fresh in a temporary directory: an ECDSA P-256
// CA and server certificate from src/pki, an ES256 key pair for the jwt authenticator and one
// bearer token signed with it, and the audit log's file.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { createCa, issueCertificate } from '../src/pki/index.js';
import { JWT_AUDIENCE, JWT_ISSUER, type ServerSettings } from './servers/common.js';

/** The run's files and token; `remove()` deletes the directory. */
export interface Materials extends ServerSettings {
  readonly dir: string;
  readonly caCert: string;
  /** `Bearer <jwt>`: ES256, sub bench-user, valid for the run. */
  readonly authorization: string;
  remove(): void;
}

/** Creates the run's certificates, keys and token under a new temporary directory. */
export async function makeMaterials(): Promise<Materials> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
  const ca = await createCa({ commonName: 'Portcullis Bench CA', keyType: 'p256' });
  const server = await issueCertificate(ca, {
    kind: 'server',
    commonName: 'localhost',
    dns: ['localhost'],
    ip: ['127.0.0.1'],
    keyType: 'p256',
  });
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
    .setIssuer(JWT_ISSUER)
    .setAudience(JWT_AUDIENCE)
    .setSubject('bench-user')
    .setIssuedAt()
    .setExpirationTime('6h')
    .sign(privateKey);
  const files = {
    caCert: join(dir, 'ca.crt'),
    cert: join(dir, 'server.crt'),
    key: join(dir, 'server.key'),
    jwtKeyFile: join(dir, 'jwt.pub.pem'),
    auditFile: join(dir, 'audit.log'),
  };
  writeFileSync(files.caCert, ca.certPem);
  writeFileSync(files.cert, server.certPem);
  writeFileSync(files.key, server.keyPem, { mode: 0o600 });
  writeFileSync(files.jwtKeyFile, await exportSPKI(publicKey));
  writeFileSync(files.auditFile, '');
  return {
    dir,
    ...files,
    authorization: `Bearer ${token}`,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
