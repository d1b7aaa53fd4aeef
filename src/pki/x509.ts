// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API
// loaded first. Import x509 from this file, never from '@peculiar/x509' directly, so that the
// load order holds everywhere.
import 'reflect-metadata';
import * as x509lib from '@peculiar/x509';

/** The @peculiar/x509 namespace, loaded after the Reflect metadata polyfill it needs. */
export const x509: typeof x509lib = x509lib;
