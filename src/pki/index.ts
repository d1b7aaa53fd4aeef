// The PKI module's public surface: import from here, not from the files behind it.
export { type CaOptions, createCa, DEFAULT_CA_DAYS, DEFAULT_CA_NAME } from './ca.js';
export {
  type CrlOptions,
  createCrl,
  DEFAULT_CRL_DAYS,
  normalizeSerial,
  type RevokedEntry,
  revokedSerials,
} from './crl.js';
export {
  DEV_BASE_HOSTS,
  DEV_CA_DAYS,
  DEV_CA_NAME,
  DEV_RENEW_BEFORE_DAYS,
  DEV_SERVER_DAYS,
  type DevCertificates,
  type DevOptions,
  ensureDevCertificates,
} from './dev.js';
export {
  DEFAULT_LEAF_DAYS,
  type Issued,
  type IssueOptions,
  issueCertificate,
  issuedFromPem,
  type Purpose,
} from './issue.js';
export { DEFAULT_KEY_TYPE, type KeyType } from './keys.js';
export { type ChainPin, spkiPin, spkiPinsOfChain } from './pin.js';
export { x509 } from './x509.js';
