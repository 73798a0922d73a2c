/**
 * One way to read a secret named on the command line or in groups.yml: a file path (relative to
 * `baseDir`), or `k8s://secret/<namespace>/<name>/<key>` read through the Kubernetes API. Every
 * flag and field that takes a secret's file calls this, so each accepts both.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { kubeApiFor } from './k8s-client.js';
import { isKubeRef, objectKey, parseKubeRef, readKey, type KubeObjectRef } from './k8s-ref.js';

export interface SecretRefOptions {
  /** Where a relative file path starts; defaults to the working directory. */
  baseDir?: string | undefined;
}

/** The secret's bytes (a PEM key, say). */
export async function readSecretBytes(ref: string, options: SecretRefOptions = {}): Promise<Buffer> {
  return (await readSecret(ref, options)).bytes;
}

/** The secret as text, exactly as stored: callers trim a token's trailing newline themselves. */
export async function readSecretRef(ref: string, options: SecretRefOptions = {}): Promise<string> {
  return (await readSecret(ref, options)).bytes.toString('utf8');
}

/** A Kubernetes Secret some read went to, and the version it found (to notice later changes). */
export interface SecretVersion {
  ref: KubeObjectRef;
  resourceVersion: string;
}

async function readSecret(ref: string, options: SecretRefOptions): Promise<{ bytes: Buffer; version?: SecretVersion }> {
  if (!isKubeRef(ref)) return { bytes: await readFile(resolve(options.baseDir ?? process.cwd(), ref)) };
  const kubeRef = parseKubeRef(ref, 'secret');
  const object = await (await kubeApiFor(ref)).get(kubeRef);
  const { kind, namespace, name } = kubeRef;
  return { bytes: readKey(kubeRef, object), version: { ref: { kind, namespace, name }, resourceVersion: object.metadata?.resourceVersion ?? '' } };
}

/**
 * Reads token paths for one parse of a groups file (`ParseGroupsOptions.readFile`) and records
 * which Kubernetes Secrets it read, at which version, so a watched source can follow them.
 */
export class SecretReader {
  /** By object (several keys of one Secret are one entry). */
  readonly secrets = new Map<string, SecretVersion>();

  constructor(private readonly baseDir: string) {}

  readonly readFile = async (path: string): Promise<string> => {
    const { bytes, version } = await readSecret(path, { baseDir: this.baseDir });
    if (version) this.secrets.set(objectKey(version.ref), version);
    return bytes.toString('utf8');
  };
}
