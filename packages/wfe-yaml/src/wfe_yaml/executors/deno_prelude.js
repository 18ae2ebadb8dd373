// The WFE prelude: evaluated before the step's script. It reads the step's message (the
// workflow data and a random channel key) from stdin, then offers the `Wfe` object. Outputs
// and logs travel as lines that carry the key, which the script never sees, so nothing the
// script prints can pass for one.
const message = (() => {
  const chunks = [];
  const buffer = new Uint8Array(65536);
  let total = 0;
  for (;;) {
    const n = Deno.stdin.readSync(buffer);
    if (n === null) break;
    if (n === 0) continue;
    chunks.push(buffer.slice(0, n));
    total += n;
  }
  const all = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return JSON.parse(new TextDecoder().decode(all));
})();

const channel = (() => {
  const key = message.key;
  const writeSync = Deno.stdout.writeSync.bind(Deno.stdout);
  const encoder = new TextEncoder();
  const stringify = JSON.stringify;
  return (kind, payload) => {
    const bytes = encoder.encode(key + stringify({ kind, ...payload }) + "\n");
    let written = 0;
    while (written < bytes.length) written += writeSync(bytes.subarray(written));
  };
})();

const data = message.data;

const Wfe = Object.freeze({
  /** A copy of the workflow data. */
  getData() {
    return structuredClone(data);
  },
  /** Set output `key` (merged into the workflow data when the step completes). */
  setOutput(key, value) {
    if (typeof key !== "string" || key.length === 0) {
      throw new TypeError("Wfe.setOutput: the key must be a non-empty string");
    }
    channel("output", { key, value: value === undefined ? null : value });
  },
  /** Log a line to the step's output. */
  log(...args) {
    const text = args.map((a) => (typeof a === "string" ? a : Deno.inspect(a))).join(" ");
    channel("log", { message: text });
  },
});

Object.defineProperty(globalThis, "Wfe", {
  value: Wfe,
  writable: false,
  configurable: false,
  enumerable: false,
});
