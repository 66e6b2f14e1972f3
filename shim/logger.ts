// pino, JSON by default, human-readable when stdout is a terminal.
import pino, { type Logger } from 'pino';
import type { LogLevel } from '../runtime/config';

export type { Logger };

export function createLogger(level: LogLevel, pretty = process.stdout.isTTY === true): Logger {
  if (pretty) {
    return pino({ level, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } });
  }
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
