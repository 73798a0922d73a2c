/**
 * Typed access to a parsed YAML document that records every problem with its source, line,
 * column and field path, so a config parser can report them all at once. Web-standard only.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node as YamlNode } from 'yaml';
import type { ConfigIssue } from '../errors.js';

export type { YamlNode };

export interface Entry {
  key: YamlNode;
  /** Undefined when the key has no value or an explicit null. */
  value: YamlNode | undefined;
}

export class NodeReader {
  readonly issues: Array<ConfigIssue & { offset: number }> = [];

  constructor(
    private readonly source: string,
    private readonly lines: LineCounter,
    private readonly doc: Document,
  ) {}

  reportAt(offset: number, field: string | undefined, message: string): void {
    const { line, col } = this.lines.linePos(offset);
    this.issues.push({ source: this.source, line, column: col, field: field || undefined, message, offset });
  }

  report(node: YamlNode, field: string, message: string): void {
    this.reportAt(node.range?.[0] ?? 0, field, message);
  }

  sortedIssues(): ConfigIssue[] {
    return [...this.issues].sort((a, b) => a.offset - b.offset).map(({ offset: _, ...issue }) => issue);
  }

  /** Follows aliases; undefined for a missing or null value. */
  resolve(node: unknown): YamlNode | undefined {
    const target = isAlias(node) ? node.resolve(this.doc) : node;
    if (target === undefined || target === null) return undefined;
    if (isScalar(target) && target.value === null) return undefined;
    return target as YamlNode;
  }

  /** The entries of a map; `known` lists the allowed keys (omit to allow any). Null reads as an empty map. */
  map(node: YamlNode | undefined, field: string, known?: readonly string[]): Map<string, Entry> | undefined {
    const entries = new Map<string, Entry>();
    if (node === undefined) return entries;
    if (!isMap(node)) {
      this.report(node, field, `expected a map${field ? '' : ' with a "groups" key'}, got ${describe(node)}`);
      return undefined;
    }
    for (const pair of node.items) {
      const key = this.resolve(pair.key);
      const name = key && isScalar(key) ? scalarText(key) : undefined;
      if (!key || name === undefined || name === '') {
        this.report(key ?? node, field, 'keys must be non-empty strings');
        continue;
      }
      if (known && !known.includes(name)) {
        this.report(key, join(field, name), `unknown field (expected one of ${known.join(', ')})`);
        continue;
      }
      entries.set(name, { key, value: this.resolve(pair.value) });
    }
    return entries;
  }

  /** Undefined when absent; null when not a string (already reported). */
  string(node: YamlNode | undefined, field: string): string | null | undefined {
    if (node === undefined) return undefined;
    if (!isScalar(node)) {
      this.report(node, field, `expected a string, got ${describe(node)}`);
      return null;
    }
    return scalarText(node);
  }

  /** A list of non-empty strings, or one string read as a list of one; undefined when absent. */
  strings(node: YamlNode | undefined, field: string): string[] | undefined {
    if (node === undefined) return undefined;
    if (!isSeq(node)) {
      const one = this.string(node, field);
      return one ? [one] : one === '' ? [] : undefined;
    }
    const out: string[] = [];
    node.items.forEach((item, i) => {
      const itemNode = this.resolve(item);
      const value = itemNode === undefined ? undefined : this.string(itemNode, `${field}[${i}]`);
      if (value) out.push(value);
      else if (value !== null) this.report(itemNode ?? node, `${field}[${i}]`, 'must not be empty');
    });
    return out;
  }
}

export function join(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}

// Go's yaml.v3 reads any scalar into a string field as written (`password: 1234`); so do we.
export function scalarText(node: { value: unknown; source?: string }): string {
  return typeof node.value === 'string' ? node.value : (node.source ?? String(node.value));
}

export function describe(node: YamlNode): string {
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) return typeof node.value === 'string' ? 'a string' : `a ${typeof node.value}`;
  return 'an unsupported node';
}

export function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, '0')).join('');
}
