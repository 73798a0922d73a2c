// nginx as the benchmark's origin and as its one-hop proxy: Debian's nginx, run without root's
// files (a generated config, pid, logs and temp paths under a prefix of ours) in one process
// (master_process off), so its CPU time is one /proc entry and it uses one core, like each of ours.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { spawnProcess, type ProcessHandle } from '../test/harness/processes.js';
import { waitForHttp } from './http-probe.js';

export interface NginxOrigin {
  /** Directory served: the 1 KB and 10 MB files, and where PUT /upload/ writes. */
  root: string;
  smallFile: string;
  largeFile: string;
}

/** Paths every origin (nginx or the Node fallback) answers; see bench/node-origin.ts. */
export const ORIGIN_PATHS = { small: '/1k', large: '/10m', upload: '/upload/bench.bin' } as const;

function common(prefix: string, name: string): string {
  mkdirSync(path.join(prefix, name), { recursive: true });
  const temp = (kind: string) => `${kind}_temp_path ${path.join(prefix, name, kind)};`;
  return `
    daemon off;
    master_process off;
    worker_processes 1;
    pid ${path.join(prefix, name, 'nginx.pid')};
    error_log ${path.join(prefix, name, 'error.log')} warn;
    events { worker_connections 8192; }
    http {
      access_log off;
      ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n      ')}
      keepalive_requests 1000000;
      keepalive_timeout 120s;
      client_max_body_size 0;
  `;
}

/** An origin that serves the two files and takes PUT /upload/… through WebDAV (it reads the whole body, then answers). */
export function nginxOriginConfig(prefix: string, port: number, site: NginxOrigin): string {
  return `${common(prefix, 'origin')}
      server {
        listen 127.0.0.1:${port} reuseport;
        root ${site.root};
        default_type application/octet-stream;
        location = ${ORIGIN_PATHS.small} { alias ${site.smallFile}; }
        location = ${ORIGIN_PATHS.large} { alias ${site.largeFile}; }
        location /upload/ { dav_methods PUT; create_full_put_path on; }
      }
    }
  `;
}

/** A one-hop proxy with a keep-alive pool to the origin, streaming bodies both ways without temp files. */
export function nginxProxyConfig(prefix: string, port: number, originPort: number): string {
  return `${common(prefix, 'proxy')}
      upstream origin { server 127.0.0.1:${originPort}; keepalive 256; keepalive_requests 1000000; }
      server {
        listen 127.0.0.1:${port} reuseport;
        location / {
          proxy_pass http://origin;
          proxy_http_version 1.1;
          proxy_set_header Connection "";
          proxy_request_buffering off;
          proxy_max_temp_file_size 0;
        }
      }
    }
  `;
}

export async function startNginx(nginx: string, prefix: string, name: string, config: string, port: number): Promise<ProcessHandle> {
  const file = path.join(prefix, `${name}.conf`);
  writeFileSync(file, config);
  // -e: the startup error log, before the config's own is read (the default is under /var/log).
  const handle = spawnProcess(nginx, ['-p', prefix, '-e', path.join(prefix, `${name}-startup.log`), '-c', file], { name: `nginx ${name}` });
  await waitForHttp(port, handle);
  return handle;
}
