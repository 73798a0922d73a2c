/**
 * The config as `GET /v1/groups` publishes it: a groups file in JSON (JSON is YAML, so a node
 * reads it with the same parser and the same line/column errors), secrets replaced by digests.
 * The output depends only on the config and the salt key, so every replica, and every restart,
 * publishes the same bytes and the same ETag.
 */
import type { Group, GroupAuthentication, GroupsConfig } from '../shared/config/groups.js';

/** The password's published form (see shared/auth/password-hash.ts). */
export type PasswordHasher = (group: string, username: string, password: string) => Promise<string>;

type Json = string | number | boolean | null | Json[] | { [key: string]: Json | undefined };

export async function wireGroups(config: GroupsConfig, hashPassword: PasswordHasher): Promise<string> {
  const groups: Record<string, Json> = {};
  for (const group of config.groups.values()) groups[group.name] = await wireGroup(group, hashPassword);
  // A final newline, so `curl` output ends its line.
  return `${JSON.stringify({ groups })}\n`;
}

async function wireGroup(group: Group, hashPassword: PasswordHasher): Promise<Json> {
  return { hosts: group.hosts, loadBalancing: group.loadBalancing, authentication: await wireAuthentication(group, hashPassword) };
}

async function wireAuthentication(group: Group, hashPassword: PasswordHasher): Promise<Json> {
  const { basic, bearer, external }: GroupAuthentication = group.authentication;
  const out: Record<string, Json> = {};
  if (basic) {
    const passwordHash = basic.passwordHash ?? (await hashPassword(group.name, basic.username, basic.password ?? ''));
    out.basic = { scheme: basic.scheme, username: basic.username, passwordHash };
  }
  if (bearer) out.bearer = { scheme: bearer.scheme, hashedToken: bearer.hashedToken };
  if (external) {
    const { accept } = external;
    out.external = {
      scheme: external.scheme,
      endpoint: external.endpoint,
      timeout: external.timeoutMs === undefined ? undefined : `${external.timeoutMs}ms`,
      // Published although nodes do not apply it: a change in it then reaches nodes as a change
      // of the group's authentication, and they re-check its tunnels with the endpoint.
      accept: accept && {
        hashedTokens: accept.hashedTokens,
        jwt: accept.jwt && {
          issuer: accept.jwt.issuer,
          audience: accept.jwt.audience,
          jwksUrl: accept.jwt.jwksUrl,
          publicKey: accept.jwt.publicKey,
          algorithms: accept.jwt.algorithms,
          groupsClaim: accept.jwt.groupsClaim,
          clockTolerance: `${accept.jwt.clockToleranceMs}ms`,
        },
      },
    };
  }
  return out;
}
