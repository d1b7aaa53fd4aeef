// Serial numbers, without the X.509 library: the gateway needs this on every mTLS handshake and
// must not load @peculiar/x509 for it.

/** Normalises a hex serial (as printed by node, openssl or this module) to lowercase hex digits. */
export function normalizeSerial(serial: string): string {
  const hex = serial.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex)) throw new TypeError(`not a hex serial number: ${serial}`);
  return hex.length % 2 === 1 ? `0${hex}` : hex;
}
