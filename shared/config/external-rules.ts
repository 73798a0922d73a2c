/**
 * `authentication.external.accept`: what the control plane's `/v1/auth/external` lets in for a
 * group (static tokens and JWTs). An extension of the seed's file: a node that reads the file
 * itself validates the block and otherwise ignores it (it asks the endpoint, as the seed does).
 */
import { isSeq } from 'yaml';
import { parseDuration } from './duration.js';
import { isHttpUrl, sha256Hex, type Entry, type NodeReader, type YamlNode } from './yaml-reader.js';

/** Asymmetric only: a shared HMAC secret in the config would let anyone who reads it mint tokens. */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
/** The claim listing the tunnel groups a token may register on, unless `groupsClaim` names another. */
export const DEFAULT_GROUPS_CLAIM = 'groups';
/** Clocks of an identity provider and a control plane drift; 30 s keeps fresh tokens valid without letting old ones live long. */
export const DEFAULT_CLOCK_TOLERANCE_MS = 30_000;

export interface JwtRule {
  issuer: string;
  /** The token's `aud` must name one of these. */
  audience: string[];
  /** Exactly one of jwksUrl and publicKey. */
  jwksUrl?: string | undefined;
  /** PEM (SPKI) public key. */
  publicKey?: string | undefined;
  /** Allowed `alg` values; unset lets the key decide (for a publicKey: RS256). */
  algorithms?: string[] | undefined;
  groupsClaim: string;
  clockToleranceMs: number;
}

export interface ExternalRules {
  /** SHA-256 (lower-case hex) of each accepted token, however the file gave it. */
  hashedTokens: string[];
  jwt?: JwtRule | undefined;
}

const FIELDS = {
  accept: ['tokens', 'hashedTokens', 'jwt'],
  jwt: ['issuer', 'audience', 'jwksUrl', 'publicKey', 'algorithms', 'groupsClaim', 'clockTolerance'],
} as const;
const SHA256_HEX = /^[0-9a-f]{64}$/i;
const PEM_PUBLIC_KEY = /^-----BEGIN PUBLIC KEY-----\s+[A-Za-z0-9+/=\s]+-----END PUBLIC KEY-----\s*$/;

export async function parseExternalRules(reader: NodeReader, node: YamlNode | undefined, field: string): Promise<ExternalRules | undefined> {
  const issuesBefore = reader.issues.length;
  const fields = reader.map(node, field, FIELDS.accept);
  if (!fields || !node) return undefined;
  const hashedTokens: string[] = [];
  for (const token of reader.strings(fields.get('tokens')?.value, `${field}.tokens`) ?? []) hashedTokens.push(await sha256Hex(token));
  const hashedField = `${field}.hashedTokens`;
  const hashed = reader.strings(fields.get('hashedTokens')?.value, hashedField) ?? [];
  hashed.forEach((digest, i) => {
    if (SHA256_HEX.test(digest)) hashedTokens.push(digest.toLowerCase());
    else reader.report(fields.get('hashedTokens')!.value!, `${hashedField}[${i}]`, 'must be a SHA-256 digest in hex (64 characters 0-9a-f)');
  });
  const jwt = jwtRule(reader, fields.get('jwt'), `${field}.jwt`);
  if (hashedTokens.length === 0 && !jwt && reader.issues.length === issuesBefore) {
    reader.report(node, field, 'give at least one of tokens, hashedTokens or jwt (an empty accept block lets nobody in)');
  }
  return jwt ? { hashedTokens, jwt } : { hashedTokens };
}

function jwtRule(reader: NodeReader, entry: Entry | undefined, field: string): JwtRule | undefined {
  const node = entry?.value;
  const fields = reader.map(node, field, FIELDS.jwt);
  if (!fields || !node) return undefined;
  const text = (name: string) => reader.string(fields.get(name)?.value, `${field}.${name}`) || undefined;
  const at = (name: string) => fields.get(name)?.value ?? node;

  const issuer = text('issuer');
  // Without issuer and audience any token the key ever signed (for any service) would pass.
  if (!issuer) reader.report(at('issuer'), `${field}.issuer`, 'required: the "iss" the identity provider puts in its tokens');
  const audience = reader.strings(fields.get('audience')?.value, `${field}.audience`) ?? [];
  if (audience.length === 0) reader.report(at('audience'), `${field}.audience`, 'required: the "aud" tokens for reverst carry (one or a list)');

  const jwksUrl = text('jwksUrl');
  const publicKey = text('publicKey');
  if ((jwksUrl === undefined) === (publicKey === undefined)) {
    reader.report(jwksUrl ? at('publicKey') : node, field, 'give exactly one of jwksUrl and publicKey');
  }
  if (jwksUrl !== undefined && !isHttpUrl(jwksUrl)) reader.report(at('jwksUrl'), `${field}.jwksUrl`, `${JSON.stringify(jwksUrl)} is not an http(s) URL`);
  if (publicKey !== undefined && jwksUrl === undefined && !PEM_PUBLIC_KEY.test(publicKey.trim())) {
    reader.report(at('publicKey'), `${field}.publicKey`, 'expected a PEM public key ("-----BEGIN PUBLIC KEY-----" …)');
  }

  const algorithms = reader.strings(fields.get('algorithms')?.value, `${field}.algorithms`);
  const algorithmsNode = at('algorithms');
  algorithms?.forEach((alg, i) => {
    if (!(JWT_ALGORITHMS as readonly string[]).includes(alg)) {
      const item = isSeq(algorithmsNode) ? (algorithmsNode.items[i] as YamlNode) : algorithmsNode;
      reader.report(item, `${field}.algorithms[${i}]`, `${JSON.stringify(alg)} is not supported (use ${JWT_ALGORITHMS.join(', ')})`);
    }
  });

  const tolerance = text('clockTolerance');
  const clockToleranceMs = tolerance === undefined ? DEFAULT_CLOCK_TOLERANCE_MS : parseDuration(tolerance);
  if (clockToleranceMs === undefined)
    reader.report(at('clockTolerance'), `${field}.clockTolerance`, `${JSON.stringify(tolerance)} is not a duration (e.g. "30s")`);

  if (!issuer || audience.length === 0 || clockToleranceMs === undefined) return undefined;
  const rule: JwtRule = { issuer, audience, groupsClaim: text('groupsClaim') ?? DEFAULT_GROUPS_CLAIM, clockToleranceMs };
  if (jwksUrl !== undefined) rule.jwksUrl = jwksUrl;
  if (publicKey !== undefined) rule.publicKey = `${publicKey.trim()}\n`;
  if (algorithms && algorithms.length > 0) rule.algorithms = algorithms;
  return rule;
}
