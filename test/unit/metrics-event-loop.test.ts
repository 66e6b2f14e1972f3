// berthd's event-loop delay on /metrics: a real HTTP scrape of BerthMetrics
// after this process blocked its own event loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BerthMetrics } from '../../shim/metrics';

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function blockEventLoop(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy: nothing else runs on this thread meanwhile
  }
}

function gauge(text: string, name: string, labels = ''): number {
  const escaped = `${name}${labels}`.replace(/[{}."]/g, (c) => `\\${c}`);
  const m = new RegExp(`^${escaped} ([0-9.eE+-]+)$`, 'm').exec(text);
  assert.ok(m, `${name}${labels} missing from:\n${text}`);
  return Number(m[1]);
}

test('a blocked event loop shows in the next scrape of /metrics, and the following window starts afresh', async () => {
  const metrics = new BerthMetrics();
  const port = await metrics.listen('127.0.0.1', 0);
  const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  try {
    await scrape();
    // The monitor needs one tick after a window starts before it measures intervals.
    await pause(100);
    blockEventLoop(600);
    await pause(50);
    const stalled = await scrape();
    assert.match(stalled, /# TYPE berth_event_loop_delay_seconds gauge/);
    assert.ok(gauge(stalled, 'berth_event_loop_delay_seconds', '{quantile="1"}') >= 0.5, 'the 600 ms block is the window max');
    assert.ok(gauge(stalled, 'berth_event_loop_delay_seconds', '{quantile="0.5"}') <= gauge(stalled, 'berth_event_loop_delay_seconds', '{quantile="0.99"}'));
    assert.ok(gauge(stalled, 'berth_event_loop_delay_window_seconds') >= 0.6, 'the window covers the block');

    await pause(200);
    const after = await scrape();
    assert.ok(gauge(after, 'berth_event_loop_delay_seconds', '{quantile="1"}') < 0.5, 'the block is not counted twice');
    assert.ok(gauge(after, 'berth_event_loop_delay_window_seconds') >= 0.2, 'the window runs from the previous scrape');
  } finally {
    await metrics.close();
  }
});

test('metrics not served: no event-loop monitor runs and Node.js process metrics are not added', async () => {
  const metrics = new BerthMetrics();
  try {
    metrics.collectProcessMetrics();
    blockEventLoop(100);
    const text = await metrics.registry.metrics();
    assert.doesNotMatch(text, /berth_process_|berth_nodejs_/);
    assert.equal(gauge(text, 'berth_event_loop_delay_seconds', '{quantile="1"}'), 0);
    // Served later: the monitor starts, and the first scrape adds the process metrics.
    const port = await metrics.listen('127.0.0.1', 0);
    const served = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(served, /berth_process_resident_memory_bytes/);
  } finally {
    await metrics.close();
  }
});
