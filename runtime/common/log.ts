// The logger the model writes to. pino's Logger satisfies it; tests pass a
// silent one. Declared once so every part of runtime/ takes the same shape.
export interface RuntimeLog {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** A logger that drops everything (unit tests, tools). */
export const silentLog: RuntimeLog = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
