import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, LogOutput } from '../../shim/logger';
import { formatLogLine } from '../../shim/log-text-format';

function capture(): { lines: string[]; out: { write(s: string): void } } {
  const lines: string[] = [];
  return { lines, out: { write: (s: string) => void lines.push(s) } };
}

test('JSON log lines carry the level as a string', () => {
  const { lines, out } = capture();
  const log = createLogger('info', new LogOutput('json', out, false));
  log.info({ socket: '/run/berth/berth.sock' }, 'serving');
  const record = JSON.parse(lines[0]) as Record<string, unknown>;
  assert.equal(record.level, 'info');
  assert.equal(record.msg, 'serving');
  assert.equal(record.socket, '/run/berth/berth.sock');
  assert.match(String(record.time), /^\d{4}-\d\d-\d\dT/);
});

test('text log lines read as time, level, message and key=value pairs', () => {
  const { lines, out } = capture();
  const log = createLogger('info', new LogOutput('text', out, false));
  log.child({ component: 'streaming' }).warn({ port: 10010, path: '/a b' }, 'listening');
  assert.match(lines[0], /^\d{4}-\d\d-\d\dT\S+Z WARN  listening component=streaming port=10010 path="\/a b"\n$/);
});

test('an error is shown by its message, its stack on indented lines', () => {
  const line = formatLogLine(JSON.stringify({ level: 'error', time: '2025-01-01T00:00:00.000Z', msg: 'failed', err: { type: 'Error', message: 'boom', stack: 'Error: boom\n    at f (x.js:1:1)' } }));
  assert.equal(line, '2025-01-01T00:00:00.000Z ERROR failed err=boom\n    at f (x.js:1:1)\n');
});

test('auto is text on a terminal and JSON elsewhere', () => {
  assert.equal(new LogOutput('auto', capture().out, true).format, 'text');
  assert.equal(new LogOutput('auto', capture().out, false).format, 'json');
});

test('level and format changed at run time apply to existing child loggers', () => {
  const { lines, out } = capture();
  const output = new LogOutput('json', out, false);
  const log = createLogger('info', output);
  const child = log.child({ component: 'images' });
  child.debug('hidden');
  log.level = 'debug';
  output.format = 'text';
  child.debug('shown');
  assert.equal(lines.length, 1);
  assert.match(lines[0], /DEBUG shown component=images/);
});
