// The client address: the socket peer, unless the peer is a trusted proxy, in which case the
// rightmost X-Forwarded-For hop that is not itself a trusted proxy. Headers from anyone else are
// ignored, so a spoofed X-Forwarded-For cannot dodge a per-IP limit.
import { BlockList, isIP } from 'node:net';

/** A compiled trusted-proxy list. */
export interface TrustedProxies {
  readonly list: BlockList;
  readonly empty: boolean;
}

/** Compiles `trustedProxies` CIDRs (already validated by the schema). */
export function compileTrustedProxies(cidrs: readonly string[]): TrustedProxies {
  const list = new BlockList();
  for (const entry of cidrs) {
    const [addr, bits] = entry.split('/') as [string, string | undefined];
    const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(bits), family);
  }
  return { list, empty: cidrs.length === 0 };
}

function plain(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

function isTrusted(proxies: TrustedProxies, address: string): boolean {
  const family = isIP(address);
  return family !== 0 && proxies.list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** The client IP for accounting and the audit log. */
export function clientIp(
  peer: string | undefined,
  forwardedFor: string | undefined,
  proxies: TrustedProxies,
): string {
  const address = plain(peer ?? 'unknown');
  if (proxies.empty || forwardedFor === undefined || !isTrusted(proxies, address)) return address;
  const hops = forwardedFor.split(',').map((h) => plain(h.trim()));
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i] as string;
    if (isIP(hop) === 0) return address; // a malformed hop: trust nothing to its left
    if (!isTrusted(proxies, hop)) return hop;
  }
  return address;
}
