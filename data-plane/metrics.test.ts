import { describe, expect, it } from 'vitest';
import { Metrics } from './metrics.js';

describe('the node metrics', () => {
  it('name process and Node.js metrics with one reverst_ prefix', async () => {
    const text = await new Metrics().registry.metrics();
    expect(text).toMatch(/^reverst_process_cpu_seconds_total /m);
    expect(text).toMatch(/^reverst_process_resident_memory_bytes /m);
    expect(text).toMatch(/^reverst_nodejs_heap_size_used_bytes /m);
    expect(text).not.toMatch(/process_process|reverst_process_nodejs/);
    // The seed's names stay as they were.
    expect(text).toContain('# TYPE reverst_tunnel_group_registrations_total counter');
  });
});
