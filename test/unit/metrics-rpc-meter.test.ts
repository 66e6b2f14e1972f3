// CRI calls counted and timed through RpcMeter (shim/metrics.ts): held in
// plain fields on the call path, every one of them on /metrics at a scrape,
// and handed over unasked once a batch is full.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BerthMetrics, RpcMeter } from '../../shim/metrics';

function value(text: string, line: RegExp): number {
  const m = line.exec(text);
  assert.ok(m, `${line} missing from:\n${text}`);
  return Number(m[1]);
}

test('calls counted and timed between scrapes are all on the next scrape, by method', async () => {
  const metrics = new BerthMetrics();
  try {
    const version = metrics.rpcMeter('Version');
    assert.equal(metrics.rpcMeter('Version'), version, 'one meter per method');
    const status = metrics.rpcMeter('Status');
    for (let i = 0; i < 3; i++) {
      version.called();
      version.ended(0.0002);
    }
    status.called();
    status.ended(0.002);
    let text = await metrics.registry.metrics();
    assert.equal(value(text, /^berth_cri_requests_total\{method="Version"\} (\d+)$/m), 3);
    assert.equal(value(text, /^berth_cri_request_duration_seconds_count\{method="Version"\} (\d+)$/m), 3);
    assert.equal(value(text, /^berth_cri_request_duration_seconds_bucket\{le="0.0005",method="Version"\} (\d+)$/m), 3);
    assert.equal(value(text, /^berth_cri_request_duration_seconds_bucket\{le="0.001",method="Status"\} (\d+)$/m), 0);
    assert.equal(value(text, /^berth_cri_request_duration_seconds_bucket\{le="0.0025",method="Status"\} (\d+)$/m), 1);
    version.called();
    version.ended(0.0002);
    text = await metrics.registry.metrics();
    assert.equal(value(text, /^berth_cri_requests_total\{method="Version"\} (\d+)$/m), 4, 'nothing counted twice');
    assert.equal(value(text, /^berth_cri_request_duration_seconds_count\{method="Version"\} (\d+)$/m), 4);
  } finally {
    await metrics.close();
  }
});

test('a meter nobody scrapes hands its calls to prom-client a batch at a time', () => {
  let counted = 0;
  const observed: number[] = [];
  const meter = new RpcMeter({ inc: (n) => (counted += n) }, { observe: (v) => observed.push(v) });
  for (let i = 0; i < 2000; i++) {
    meter.called();
    meter.ended(0.001);
  }
  assert.ok(observed.length >= 1500, `${observed.length} of 2000 handed over without a scrape`);
  assert.equal(counted, observed.length, 'the count goes with the times');
  meter.flush();
  assert.equal(observed.length, 2000);
  assert.equal(counted, 2000);
});
