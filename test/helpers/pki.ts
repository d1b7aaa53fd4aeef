// One set of test certificates per process, issued at test start by src/pki (ECDSA, so it takes
// milliseconds). Tests that need a broken certificate take it from here by name.
import { createCa, createCrl, type Issued, issueCertificate } from '../../src/pki/index.js';

/** Every certificate, key and CRL the tests use, good and deliberately bad. */
export interface TestPki {
  /** The CA the gateway trusts for servers and clients. */
  ca: Issued;
  /** Server certificate for localhost, gw.test, app.test, 127.0.0.1 and ::1. */
  server: Issued;
  /** Valid client certificate, CN device-1. */
  client: Issued;
  /** A second CA the gateway does not trust. */
  otherCa: Issued;
  /** Client certificate signed by otherCa. */
  clientFromOtherCa: Issued;
  /** Client certificate whose validity ended yesterday. */
  expiredClient: Issued;
  /** Client certificate whose only EKU is serverAuth. */
  serverOnlyEkuClient: Issued;
  /** Client certificate listed in `crl`. */
  revokedClient: Issued;
  /** CRL from `ca` revoking `revokedClient`. */
  crl: string;
  /** CRL from `ca` whose nextUpdate has passed. */
  staleCrl: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

let memo: Promise<TestPki> | undefined;

async function build(): Promise<TestPki> {
  const now = Date.now();
  const [ca, otherCa] = await Promise.all([
    createCa({ commonName: 'Portcullis Test CA' }),
    createCa({ commonName: 'Untrusted Test CA' }),
  ]);
  const [server, client, clientFromOtherCa, expiredClient, serverOnlyEkuClient, revokedClient] =
    await Promise.all([
      issueCertificate(ca, {
        kind: 'server',
        commonName: 'localhost',
        dns: ['localhost', 'gw.test', 'app.test'],
        ip: ['127.0.0.1', '::1'],
      }),
      issueCertificate(ca, { kind: 'client', commonName: 'device-1' }),
      issueCertificate(otherCa, { kind: 'client', commonName: 'device-1' }),
      issueCertificate(ca, {
        kind: 'client',
        commonName: 'device-expired',
        notBefore: new Date(now - 30 * DAY_MS),
        notAfter: new Date(now - DAY_MS),
      }),
      issueCertificate(ca, {
        kind: 'client',
        commonName: 'device-wrong-eku',
        extendedKeyUsage: ['serverAuth'],
      }),
      issueCertificate(ca, { kind: 'client', commonName: 'device-revoked' }),
    ]);
  const [crl, staleCrl] = await Promise.all([
    createCrl(ca, [{ serial: revokedClient.serial }]),
    createCrl(ca, [], { thisUpdate: new Date(now - 8 * DAY_MS), nextUpdate: new Date(now - DAY_MS) }),
  ]);
  return {
    ca,
    server,
    client,
    otherCa,
    clientFromOtherCa,
    expiredClient,
    serverOnlyEkuClient,
    revokedClient,
    crl,
    staleCrl,
  };
}

/** The process-wide test PKI, generated on first use. */
export async function testPki(): Promise<TestPki> {
  memo ??= build();
  return memo;
}
