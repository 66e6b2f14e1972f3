// Decodes HPACK Huffman-coded strings (RFC 7541 section 5.2) four bits at a
// time. The code tree's 256 inner nodes are the decoder's states; a table
// built once at load says, for each state and nibble, the state reached,
// the symbol completed on the way (a 5-bit shortest code means at most one
// per nibble) and whether EOS was met (an error in a string). A string may
// end only at the root or inside the code of EOS at most 7 bits deep:
// padding is the most significant bits of EOS, all ones.
import { EOS_SYMBOL, HUFFMAN_CODE_LENGTHS } from './huffman-code';

const NO_SYMBOL = -1;
const EOS_SEEN = -2;

/** Children of inner node n: child[2n] (bit 0), child[2n + 1] (bit 1); >= 0 an inner node, < 0 the leaf of symbol -1 - value. */
const child = new Int32Array(512).fill(0);
/** Per inner node: whether a string may end there (the root, or an all-ones path of at most 7 bits). */
const mayEnd = new Uint8Array(256);
/** Per state * 16 + nibble. */
const nextState = new Uint8Array(256 * 16);
const emitted = new Int16Array(256 * 16);

function buildTree(): void {
  const symbols = HUFFMAN_CODE_LENGTHS.map((length, symbol) => ({ length, symbol })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  let nodes = 1;
  let code = 0;
  let previousLength = symbols[0].length;
  const onesDepth = new Int8Array(256).fill(-1);
  onesDepth[0] = 0;
  for (let k = 0; k < symbols.length; k++) {
    const { length, symbol } = symbols[k];
    if (k > 0) code = (code + 1) * 2 ** (length - previousLength);
    previousLength = length;
    let node = 0;
    for (let bit = length - 1; bit > 0; bit--) {
      const b = Math.floor(code / 2 ** bit) & 1;
      let next = child[2 * node + b];
      if (next === 0) {
        next = nodes++;
        child[2 * node + b] = next;
        if (b === 1 && onesDepth[node] >= 0) onesDepth[next] = onesDepth[node] + 1;
      }
      node = next;
    }
    child[2 * node + (code & 1)] = -1 - symbol;
  }
  for (let n = 0; n < 256; n++) mayEnd[n] = onesDepth[n] >= 0 && onesDepth[n] <= 7 ? 1 : 0;
}

function buildNibbleTable(): void {
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let symbol = NO_SYMBOL;
      for (let bit = 3; bit >= 0; bit--) {
        const next = child[2 * node + ((nibble >> bit) & 1)];
        if (next >= 0) {
          node = next;
          continue;
        }
        const leaf = -1 - next;
        if (leaf === EOS_SYMBOL) {
          symbol = EOS_SEEN;
          break;
        }
        symbol = leaf;
        node = 0;
      }
      nextState[state * 16 + nibble] = symbol === EOS_SEEN ? 0 : node;
      emitted[state * 16 + nibble] = symbol;
    }
  }
}

buildTree();
buildNibbleTable();

export class HuffmanError extends Error {}

/** The octets coded in `input[start, end)`, as a latin1 string. Throws HuffmanError on EOS or bad padding. */
export function huffmanDecode(input: Buffer, start: number, end: number): string {
  // The shortest code is 5 bits: at most 8/5 symbols per input octet.
  const out = Buffer.allocUnsafe(Math.ceil(((end - start) * 8) / 5));
  let length = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const byte = input[i];
    let at = state * 16 + (byte >> 4);
    let symbol = emitted[at];
    if (symbol >= 0) out[length++] = symbol;
    else if (symbol === EOS_SEEN) throw new HuffmanError('EOS inside a Huffman-coded string');
    state = nextState[at];
    at = state * 16 + (byte & 15);
    symbol = emitted[at];
    if (symbol >= 0) out[length++] = symbol;
    else if (symbol === EOS_SEEN) throw new HuffmanError('EOS inside a Huffman-coded string');
    state = nextState[at];
  }
  if (!mayEnd[state]) throw new HuffmanError('a Huffman-coded string ends in padding that is not at most 7 one bits');
  return out.toString('latin1', 0, length);
}
