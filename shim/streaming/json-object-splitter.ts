// Splits a byte stream of concatenated JSON objects (the resize stream:
// {"Width":80,"Height":24}{"Width":100,...}) into objects, whatever the chunking.
export class JsonObjectSplitter {
  private buf = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private start = -1;

  constructor(private readonly maxObject = 4096) {}

  /** Returns the complete objects found; throws on garbage or an oversized object. */
  push(chunk: Buffer | string): unknown[] {
    const text = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    const out: unknown[] = [];
    const base = this.buf.length;
    this.buf += text;
    for (let i = base; i < this.buf.length; i++) {
      const c = this.buf[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.inString = false;
        continue;
      }
      if (c === '"') {
        if (this.depth === 0) throw new Error('string outside an object');
        this.inString = true;
      } else if (c === '{') {
        if (this.depth === 0) this.start = i;
        this.depth++;
      } else if (c === '}') {
        if (this.depth === 0) throw new Error('unbalanced }');
        this.depth--;
        if (this.depth === 0) {
          out.push(JSON.parse(this.buf.slice(this.start, i + 1)));
          this.buf = this.buf.slice(i + 1);
          i = -1;
          this.start = -1;
        }
      } else if (this.depth === 0 && !/\s/.test(c)) {
        throw new Error(`unexpected ${JSON.stringify(c)} between objects`);
      }
    }
    if (this.depth === 0) this.buf = '';
    if (this.buf.length > this.maxObject) throw new Error('JSON object too large');
    return out;
  }
}

export function terminalSizeFrom(value: unknown): { width: number; height: number } | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const width = v.Width ?? v.width;
  const height = v.Height ?? v.height;
  if (typeof width !== 'number' || typeof height !== 'number') return undefined;
  return { width, height };
}
