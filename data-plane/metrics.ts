import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The node's Prometheus metrics, with the seed's metric names. One registry per node. */
export class Metrics {
  readonly registry = new Registry();

  readonly registrations = new Counter({
    name: 'reverst_tunnel_group_registrations_total',
    // Groups come from the config only: a registration for any other name counts under "(unknown)".
    help: 'Tunnel registrations by configured group ("(unknown)" for any other name) and result (ok, unauthorized, not_found, bad_request, timeout, error)',
    labelNames: ['group', 'result'] as const,
    registers: [this.registry],
  });

  readonly proxyRequests = new Counter({
    name: 'reverst_tunnel_group_proxy_requests_total',
    help: 'Public HTTP requests proxied, by group and status code',
    labelNames: ['group', 'code'] as const,
    registers: [this.registry],
  });

  readonly proxyLatency = new Histogram({
    name: 'reverst_tunnel_group_proxy_requests_latency',
    help: 'Time until the response head arrived from the tunnel, in seconds',
    labelNames: ['group'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly activeConnections = new Gauge({
    name: 'reverst_tunnel_group_active_conn',
    help: 'Tunnel connections registered on this node, by group',
    labelNames: ['group'] as const,
    registers: [this.registry],
  });

  readonly hopRequests = new Counter({
    name: 'reverst_hop_requests_total',
    help: 'Requests forwarded to another node, by result (response, retry: failed before it began, failed, cancelled: the visitor left)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly hopReceived = new Counter({
    name: 'reverst_hop_received_total',
    help: 'Requests received from other nodes, by result (served, unauthorized, bad_request)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly membershipEvents = new Counter({
    name: 'reverst_membership_events_total',
    help: 'Route table changes and store health changes seen by this node',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  constructor() {
    // prom-client's names already start process_ and nodejs_: prefixed once, they read reverst_process_cpu_seconds_total.
    collectDefaultMetrics({ register: this.registry, prefix: 'reverst_' });
  }
}
