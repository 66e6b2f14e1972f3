// The text form of a pino JSON line, for people reading a terminal or the
// journal: "2025-01-02T03:04:05.678Z INFO  message key=value ...". The error
// stack, when there is one, follows on indented lines.

const SKIPPED = new Set(['time', 'level', 'msg', 'pid', 'hostname']);

function quoteIfNeeded(text: string): string {
  return text === '' || /[\s"=\\]/.test(text) ? JSON.stringify(text) : text;
}

function renderValue(value: unknown): string {
  if (typeof value === 'string') return quoteIfNeeded(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  return quoteIfNeeded(JSON.stringify(value));
}

/** Formats one JSON log line; a line that is not a JSON object is passed through. */
export function formatLogLine(line: string): string {
  let record: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return line;
    record = parsed as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = typeof record.time === 'string' ? record.time : typeof record.time === 'number' ? new Date(record.time).toISOString() : '';
  const level = String(record.level ?? '').toUpperCase().padEnd(5);
  const parts = [time, level, typeof record.msg === 'string' ? record.msg : ''].filter((p) => p !== '');
  let stack = '';
  for (const [key, value] of Object.entries(record)) {
    if (SKIPPED.has(key) || value === undefined) continue;
    if ((key === 'err' || key === 'error') && typeof value === 'object' && value !== null) {
      const err = value as { message?: unknown; stack?: unknown };
      parts.push(`${key}=${renderValue(typeof err.message === 'string' ? err.message : value)}`);
      if (typeof err.stack === 'string') stack = err.stack.split('\n').slice(1).map((l) => `    ${l.trim()}`).join('\n');
      continue;
    }
    parts.push(`${key}=${renderValue(value)}`);
  }
  return `${parts.join(' ')}\n${stack ? `${stack}\n` : ''}`;
}
