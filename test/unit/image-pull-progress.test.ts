import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PullProgress } from '../../runtime/image/pull-progress';

function capture(): { lines: { obj: Record<string, unknown>; msg?: string }[]; log: { debug(): void; info(o: object, m?: string): void; warn(): void; error(): void } } {
  const lines: { obj: Record<string, unknown>; msg?: string }[] = [];
  return { lines, log: { debug: () => undefined, info: (obj, msg) => void lines.push({ obj: obj as Record<string, unknown>, msg }), warn: () => undefined, error: () => undefined } };
}

test('a long pull logs bytes and layers done at most once per interval', () => {
  let now = 0;
  const { lines, log } = capture();
  const progress = new PullProgress('r.io/app:v1', 100_000_000, 3, log, 10_000, () => now);
  for (let t = 0; t < 35_000; t += 100) {
    now = t;
    progress.bytesReceived(250_000);
  }
  now = 35_000;
  progress.layerDone();
  assert.equal(lines.length, 3, 'one line per 10 s of a 35 s pull');
  assert.deepEqual(lines[0].obj, { image: 'r.io/app:v1', bytesDone: 25_250_000, bytesTotal: 100_000_000, layersDone: 0, layersTotal: 3 });
  assert.equal(lines[2].msg, 'pulling r.io/app:v1: 75% of 100.0 MB, 0/3 layers');
});

test('a pull shorter than the interval, or one whose last layer is done, logs no progress line', () => {
  let now = 0;
  const { lines, log } = capture();
  const progress = new PullProgress('r.io/app:v1', 1000, 1, log, 10_000, () => now);
  progress.bytesReceived(500);
  now = 9_999;
  progress.bytesReceived(500);
  now = 20_000;
  progress.layerDone();
  assert.equal(lines.length, 0);
});
