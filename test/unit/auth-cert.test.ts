import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { PeerCertificate } from 'node:tls';
import { clientCertificateOf, parseSubjectAltName } from '../../src/server/auth/cert.js';

describe('parseSubjectAltName (Node subjectaltname strings)', () => {
  it('splits the plain form by type, keeping certificate order', () => {
    const names = parseSubjectAltName(
      'DNS:a.example, URI:spiffe://x/ns/a, email:e@example.com, IP Address:1.2.3.4, DNS:b.example',
    );
    assert.deepEqual(names, {
      dns: ['a.example', 'b.example'],
      uris: ['spiffe://x/ns/a'],
      emails: ['e@example.com'],
      ips: ['1.2.3.4'],
    });
  });

  it('keeps IPv6 colons inside the value and ignores types it does not use', () => {
    const names = parseSubjectAltName(
      'IP Address:2001:DB8:0:0:0:0:0:1, othername:<unsupported>, Registered ID:1.2.3, DirName:"CN=x\\u002cO=y"',
    );
    assert.deepEqual(names, { dns: [], uris: [], emails: [], ips: ['2001:DB8:0:0:0:0:0:1'] });
  });

  it('decodes quoted values, so a comma inside a name cannot forge a second entry', () => {
    const names = parseSubjectAltName('DNS:d7.example, DNS:"a\\u002c DNS:evil.example", email:"o\'x@e"');
    assert.deepEqual(names?.dns, ['d7.example', 'a, DNS:evil.example']);
    assert.deepEqual(names?.emails, ["o'x@e"]);
  });

  it('decodes escaped quotes and backslashes', () => {
    assert.deepEqual(parseSubjectAltName('URI:"a\\"b\\\\c"')?.uris, ['a"b\\c']);
  });

  const malformed: [string, string][] = [
    ['no type', 'a.example'],
    ['bare comma in a value', 'DNS:a,b'],
    ['bare quote in a value', 'DNS:a"b'],
    ['unterminated quote', 'DNS:"abc'],
    ['junk after a quoted value', 'DNS:"a"b, DNS:c'],
    ['bad separator', 'DNS:a,DNS:b'],
    ['empty type', ':a'],
    ['trailing separator', 'DNS:a, '],
    ['bad JSON escape', 'DNS:"\\x41"'],
  ];
  for (const [label, text] of malformed) {
    it(`refuses the whole list on ${label}`, () => {
      assert.equal(parseSubjectAltName(text), null);
    });
  }

  it('reads an absent or empty list as no names', () => {
    assert.deepEqual(parseSubjectAltName(undefined), { dns: [], uris: [], emails: [], ips: [] });
    assert.deepEqual(parseSubjectAltName(''), { dns: [], uris: [], emails: [], ips: [] });
  });
});

describe('clientCertificateOf', () => {
  const raw = Buffer.from('not really DER, but hashed like it');
  const peer = (extra: Partial<Record<keyof PeerCertificate, unknown>>): PeerCertificate =>
    ({
      raw,
      subject: { CN: 'device-1' },
      subjectaltname: 'DNS:d1.example, URI:spiffe://corp/d1, email:d1@example.com',
      valid_to: 'Jan 10 09:05:03 2030 GMT',
      ...extra,
    }) as unknown as PeerCertificate;

  it('maps a verified certificate, with both fingerprint forms', () => {
    const cert = clientCertificateOf(peer({}), true);
    const digest = createHash('sha256').update(raw).digest();
    assert.deepEqual(cert, {
      subjectCN: 'device-1',
      dnsNames: ['d1.example'],
      uris: ['spiffe://corp/d1'],
      emails: ['d1@example.com'],
      fingerprint256: digest.toString('hex'),
      x5tS256: digest.toString('base64url'),
      notAfter: Date.UTC(2030, 0, 10, 9, 5, 3),
    });
    assert.match(cert?.x5tS256 ?? '', /^[A-Za-z0-9_-]{43}$/);
  });

  it('returns null for an unverified certificate, no certificate, or the empty object Node gives', () => {
    assert.equal(clientCertificateOf(peer({}), false), null);
    assert.equal(clientCertificateOf(undefined, true), null);
    assert.equal(clientCertificateOf({} as PeerCertificate, true), null);
    assert.equal(clientCertificateOf(peer({ raw: Buffer.alloc(0) }), true), null);
  });

  it('treats a repeated CN as no CN', () => {
    assert.equal(clientCertificateOf(peer({ subject: { CN: ['a', 'b'] } }), true)?.subjectCN, undefined);
  });

  it('trusts no SAN when the list is malformed', () => {
    const cert = clientCertificateOf(peer({ subjectaltname: 'DNS:a,b' }), true);
    assert.deepEqual([cert?.dnsNames, cert?.uris, cert?.emails], [[], [], []]);
  });

  it('reads an unparsable notAfter as already past', () => {
    assert.equal(clientCertificateOf(peer({ valid_to: 'someday' }), true)?.notAfter, 0);
  });
});
