// berthd's logs: pino, with string levels ("level":"info"), as JSON lines or as
// text (shim/log-text-format.ts, no dev-only packages). Level and format can
// change while berthd runs (SIGHUP): pino children follow their parent's
// level, and the format is decided per line by the output.
import { isatty } from 'node:tty';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { LogFormat, LogLevel } from '../runtime/config';
import { formatLogLine } from './log-text-format';

export type { Logger };

/** Where log lines go, as JSON or text; `format` may be changed at any time. */
export class LogOutput implements DestinationStream {
  private current: 'text' | 'json';

  constructor(
    format: LogFormat,
    private readonly out: DestinationStream = pino.destination({ dest: 1, sync: true }),
    private readonly isTerminal: boolean = isatty(1),
  ) {
    this.current = this.resolve(format);
  }

  get format(): 'text' | 'json' {
    return this.current;
  }

  set format(format: LogFormat | 'text' | 'json') {
    this.current = this.resolve(format);
  }

  private resolve(format: LogFormat): 'text' | 'json' {
    if (format === 'auto') return this.isTerminal ? 'text' : 'json';
    return format;
  }

  write(line: string): void {
    this.out.write(this.current === 'json' ? line : formatLogLine(line));
  }
}

export function createLogger(level: LogLevel, output: DestinationStream = new LogOutput('json')): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    output,
  );
}
