/**
 * The tunnel groups file (groups.yml): schema, validation and the parsed model.
 * Every file the Go seed accepts loads here with the same meaning; problems are reported
 * with source, line, column and field path. Web-standard only, so the control plane can use it.
 */
import { isMap, isSeq, LineCounter, parseDocument } from 'yaml';
import { parsePasswordHash } from '../auth/password-hash.js';
import { ConfigError, ReverstError } from '../errors.js';
import { parseDuration } from './duration.js';
import { parseExternalRules, type ExternalRules } from './external-rules.js';
import { hostPatternProblem, normalizeHostname } from './hosts.js';
import { describe, isHttpUrl, NodeReader, sha256Hex, type Entry, type YamlNode } from './yaml-reader.js';

export type { ExternalRules, JwtRule } from './external-rules.js';

export const LOAD_BALANCING_POLICIES = ['round-robin', 'least-inflight'] as const;
export type LoadBalancing = (typeof LOAD_BALANCING_POLICIES)[number];
/** The seed's only policy. */
export const DEFAULT_LOAD_BALANCING: LoadBalancing = 'round-robin';

/** The `Authorization` scheme each strategy answers to unless the file overrides it (seed defaults). */
export const DEFAULT_SCHEMES = { basic: 'Basic', bearer: 'Bearer', external: 'Bearer' } as const;
export type StrategyName = keyof typeof DEFAULT_SCHEMES;

export interface BasicAuthentication {
  scheme: string;
  username: string;
  /** Exactly one of password (as written) and passwordHash is set. */
  password?: string | undefined;
  /**
   * A PBKDF2 hash in PHC form (see shared/auth/password-hash.ts): what a control plane publishes
   * instead of the password, and what a file may give instead of one.
   */
  passwordHash?: string | undefined;
}

export interface BearerAuthentication {
  scheme: string;
  /**
   * SHA-256 of the expected token, lower-case hex, whichever of token, tokenPath, hashedToken
   * or hashedTokenPath the file used: the plaintext token is not kept after loading.
   */
  hashedToken: string;
}

export interface ExternalAuthentication {
  scheme: string;
  endpoint: string;
  /** Per-group override of the authenticator's default timeout. */
  timeoutMs?: number | undefined;
  /** What the control plane's /v1/auth/external accepts for this group; nodes only pass it on. */
  accept?: ExternalRules | undefined;
}

export interface GroupAuthentication {
  basic?: BasicAuthentication | undefined;
  bearer?: BearerAuthentication | undefined;
  external?: ExternalAuthentication | undefined;
}

export interface Group {
  name: string;
  /** Normalized (lower case, no trailing dot); may start with `*.`. */
  hosts: string[];
  /** No strategy at all means anyone may register. */
  authentication: GroupAuthentication;
  loadBalancing: LoadBalancing;
}

export interface GroupsConfig {
  groups: Map<string, Group>;
}

export interface ParseGroupsOptions {
  /**
   * Reads a tokenPath or hashedTokenPath; gets the path as written in the file. Without one (a
   * serverless runtime, a control plane's JSON) token paths are refused: this module reads no files,
   * so that it loads where there is no file system (file and k8s:// sources pass a `SecretReader`,
   * which also reads `k8s://secret/<namespace>/<name>/<key>`).
   */
  readFile?: ((path: string) => Promise<string>) | undefined;
}

const TOKEN_SOURCES = ['token', 'tokenPath', 'hashedToken', 'hashedTokenPath'] as const;
type BearerSource = (typeof TOKEN_SOURCES)[number];

const FIELDS = {
  root: ['groups'],
  group: ['hosts', 'authentication', 'loadBalancing'],
  authentication: ['basic', 'bearer', 'external'],
  basic: ['scheme', 'username', 'password', 'passwordHash'],
  bearer: ['scheme', ...TOKEN_SOURCES],
  external: ['scheme', 'endpoint', 'timeout', 'accept'],
} as const;

// RFC 9110 token characters: a scheme cannot contain spaces or separators.
const SCHEME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const SHA256_HEX = /^[0-9a-f]{64}$/i;

export async function parseGroups(text: string, sourceName: string, options: ParseGroupsOptions = {}): Promise<GroupsConfig> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const reader = new NodeReader(sourceName, lines, doc);
  for (const error of doc.errors) {
    const message = error.code === 'MULTIPLE_DOCS' ? 'a groups file holds a single YAML document (found a second "---")' : error.message;
    reader.reportAt(error.pos[0], undefined, message);
  }
  if (reader.issues.length === 0) {
    const readFile = options.readFile ?? noFileSystem;
    const groups = await new GroupsParser(reader, readFile).parse(doc.contents);
    if (reader.issues.length === 0) return { groups };
  }
  throw new ConfigError(reader.sortedIssues());
}

async function noFileSystem(): Promise<string> {
  throw new Error('token files cannot be read by this source: give token or hashedToken instead');
}

class GroupsParser {
  /** Normalized host → the group that claimed it first. */
  private readonly hostOwners = new Map<string, string>();

  constructor(
    private readonly reader: NodeReader,
    private readonly readFile: (path: string) => Promise<string>,
  ) {}

  async parse(root: unknown): Promise<Map<string, Group>> {
    const groups = new Map<string, Group>();
    const rootFields = this.reader.map(this.reader.resolve(root), '', FIELDS.root);
    const groupEntries = this.reader.map(rootFields?.get('groups')?.value, 'groups');
    for (const [name, { value }] of groupEntries ?? []) {
      const group = await this.group(name, value, `groups.${JSON.stringify(name)}`);
      if (group) groups.set(name, group);
    }
    return groups;
  }

  private async group(name: string, node: YamlNode | undefined, field: string): Promise<Group | undefined> {
    const fields = this.reader.map(node, field, FIELDS.group);
    if (!fields) return undefined;
    return {
      name,
      hosts: this.hosts(name, fields.get('hosts')?.value, `${field}.hosts`),
      authentication: await this.authentication(fields.get('authentication')?.value, `${field}.authentication`),
      loadBalancing: this.loadBalancing(fields.get('loadBalancing')?.value, `${field}.loadBalancing`),
    };
  }

  private hosts(group: string, node: YamlNode | undefined, field: string): string[] {
    const hosts: string[] = [];
    if (node === undefined) return hosts;
    if (!isSeq(node)) {
      this.reader.report(node, field, `expected a list of hosts, got ${describe(node)}`);
      return hosts;
    }
    node.items.forEach((item, i) => {
      const itemField = `${field}[${i}]`;
      const itemNode = this.reader.resolve(item);
      if (itemNode === undefined) {
        this.reader.report(node, itemField, 'must not be empty');
        return;
      }
      const raw = this.reader.string(itemNode, itemField);
      if (raw === null || raw === undefined) return;
      const host = normalizeHostname(raw);
      const problem = hostPatternProblem(host);
      const owner = this.hostOwners.get(host);
      if (problem) this.reader.report(itemNode, itemField, `${JSON.stringify(raw)} is not a valid host: ${problem}`);
      else if (owner !== undefined && owner !== group) {
        this.reader.report(itemNode, itemField, `host ${JSON.stringify(host)} is already used by group ${JSON.stringify(owner)}`);
      } else if (owner === undefined) {
        this.hostOwners.set(host, group);
        hosts.push(host);
      }
    });
    return hosts;
  }

  private loadBalancing(node: YamlNode | undefined, field: string): LoadBalancing {
    const value = this.reader.string(node, field);
    if (value === null || value === undefined) return DEFAULT_LOAD_BALANCING;
    if ((LOAD_BALANCING_POLICIES as readonly string[]).includes(value)) return value as LoadBalancing;
    this.reader.report(node!, field, `${JSON.stringify(value)} is not a policy (use one of ${LOAD_BALANCING_POLICIES.join(', ')})`);
    return DEFAULT_LOAD_BALANCING;
  }

  private async authentication(node: YamlNode | undefined, field: string): Promise<GroupAuthentication> {
    const fields = this.reader.map(node, field, FIELDS.authentication);
    if (!fields) return {};
    const nodeOf = (name: StrategyName) => fields.get(name)?.value;
    // Strategies that are absent stay undefined.
    const authentication: GroupAuthentication = {
      basic: this.basic(nodeOf('basic'), `${field}.basic`),
      bearer: await this.bearer(nodeOf('bearer'), `${field}.bearer`),
      external: await this.external(nodeOf('external'), `${field}.external`),
    };
    // The strategy is picked by the header's scheme, so two strategies cannot share one.
    const schemeOwners = new Map<string, StrategyName>();
    for (const name of FIELDS.authentication) {
      const strategy = authentication[name];
      if (!strategy) continue;
      const owner = schemeOwners.get(strategy.scheme.toLowerCase());
      if (owner) {
        const strategyNode = nodeOf(name)!;
        const at = (isMap(strategyNode) && (strategyNode.get('scheme', true) as YamlNode | undefined)) || strategyNode;
        this.reader.report(
          at,
          `${field}.${name}.scheme`,
          `scheme ${JSON.stringify(strategy.scheme)} is already used by ${owner}: give one of them another scheme (e.g. scheme: "JWT")`,
        );
      }
      schemeOwners.set(strategy.scheme.toLowerCase(), name);
    }
    return authentication;
  }

  private scheme(fields: Map<string, Entry>, field: string, strategy: StrategyName): string {
    const node = fields.get('scheme')?.value;
    const scheme = this.reader.string(node, `${field}.scheme`);
    // The seed treats an empty scheme as unset.
    if (!scheme) return DEFAULT_SCHEMES[strategy];
    if (!SCHEME.test(scheme)) this.reader.report(node!, `${field}.scheme`, `${JSON.stringify(scheme)} is not a valid scheme (one word, no spaces)`);
    return scheme;
  }

  /** A required non-empty string; the seed treats "" as missing. */
  private required(fields: Map<string, Entry>, strategyNode: YamlNode, field: string, name: string): string | undefined {
    const value = this.reader.string(fields.get(name)?.value, `${field}.${name}`);
    if (value === undefined || value === '') {
      this.reader.report(fields.get(name)?.value ?? strategyNode, `${field}.${name}`, 'required');
    }
    return value || undefined;
  }

  private basic(node: YamlNode | undefined, field: string): BasicAuthentication | undefined {
    const fields = this.reader.map(node, field, FIELDS.basic);
    if (!fields || !node) return undefined;
    const username = this.required(fields, node, field, 'username');
    const scheme = this.scheme(fields, field, 'basic');
    const hashNode = fields.get('passwordHash')?.value;
    const passwordHash = this.reader.string(hashNode, `${field}.passwordHash`);
    if (!passwordHash) {
      const password = this.required(fields, node, field, 'password');
      return username !== undefined && password !== undefined ? { scheme, username, password } : undefined;
    }
    if (fields.get('password')?.value) {
      this.reader.report(fields.get('password')!.key, `${field}.password`, 'conflicts with passwordHash: set only one of them');
      return undefined;
    }
    const parsed = parsePasswordHash(passwordHash);
    if ('problem' in parsed) {
      this.reader.report(hashNode!, `${field}.passwordHash`, parsed.problem);
      return undefined;
    }
    return username !== undefined ? { scheme, username, passwordHash } : undefined;
  }

  private async bearer(node: YamlNode | undefined, field: string): Promise<BearerAuthentication | undefined> {
    const fields = this.reader.map(node, field, FIELDS.bearer);
    if (!fields || !node) return undefined;
    const scheme = this.scheme(fields, field, 'bearer');
    const candidates = TOKEN_SOURCES.map((name) => {
      const entry = fields.get(name);
      return { name, entry, value: this.reader.string(entry?.value, `${field}.${name}`) };
    });
    // The seed treats "" as unset.
    const sources = candidates.filter((source): source is { name: BearerSource; entry: Entry; value: string } => Boolean(source.value));
    if (sources.length === 0) {
      const wrongType = candidates.some((source) => source.value === null);
      if (!wrongType) this.reader.report(node, field, `one of ${TOKEN_SOURCES.join(', ')} is required`);
      return undefined;
    }
    const [{ name, entry, value }, conflicting] = sources as [(typeof sources)[number], ...typeof sources];
    if (conflicting) {
      this.reader.report(conflicting.entry.key, `${field}.${conflicting.name}`, `conflicts with ${name}: set only one of ${TOKEN_SOURCES.join(', ')}`);
      return undefined;
    }
    const sourceField = `${field}.${name}`;
    const fromFile = name === 'tokenPath' || name === 'hashedTokenPath';
    const secret = fromFile ? await this.tokenFile(value, entry.value!, sourceField) : value;
    if (secret === undefined) return undefined;
    if (name === 'token' || name === 'tokenPath') return { scheme, hashedToken: await sha256Hex(secret) };
    if (!SHA256_HEX.test(secret)) {
      const where = fromFile ? `the contents of ${JSON.stringify(value)}` : 'it';
      this.reader.report(entry.value!, sourceField, `must be a SHA-256 digest in hex (64 characters 0-9a-f); ${where} is not`);
      return undefined;
    }
    return { scheme, hashedToken: secret.toLowerCase() };
  }

  private async tokenFile(path: string, node: YamlNode, field: string): Promise<string | undefined> {
    let contents: string;
    try {
      contents = await this.readFile(path);
    } catch (err) {
      // Our own errors (a k8s://secret/… reference) already name what failed and what to fix.
      const why = err instanceof ReverstError ? err.message : `cannot read token file ${JSON.stringify(path)}: ${(err as Error).message}`;
      this.reader.report(node, field, why);
      return undefined;
    }
    // Files usually end in a newline, and a header value cannot contain one anyway.
    const token = contents.trim();
    if (token === '') this.reader.report(node, field, `token file ${JSON.stringify(path)} is empty`);
    return token || undefined;
  }

  private async external(node: YamlNode | undefined, field: string): Promise<ExternalAuthentication | undefined> {
    const fields = this.reader.map(node, field, FIELDS.external);
    if (!fields || !node) return undefined;
    const scheme = this.scheme(fields, field, 'external');
    const endpoint = this.required(fields, node, field, 'endpoint');
    if (endpoint !== undefined && !isHttpUrl(endpoint)) {
      this.reader.report(fields.get('endpoint')!.value!, `${field}.endpoint`, `${JSON.stringify(endpoint)} is not an http(s) URL`);
    }
    const timeoutNode = fields.get('timeout')?.value;
    const timeout = this.reader.string(timeoutNode, `${field}.timeout`);
    const timeoutMs = typeof timeout === 'string' ? parseDuration(timeout) : undefined;
    if (typeof timeout === 'string' && !timeoutMs) {
      this.reader.report(timeoutNode!, `${field}.timeout`, `${JSON.stringify(timeout)} is not a positive duration (e.g. "500ms", "5s")`);
    }
    const accept = await parseExternalRules(this.reader, fields.get('accept')?.value, `${field}.accept`);
    if (endpoint === undefined) return undefined;
    const external: ExternalAuthentication = { scheme, endpoint };
    if (timeoutMs) external.timeoutMs = timeoutMs;
    if (accept) external.accept = accept;
    return external;
  }
}
