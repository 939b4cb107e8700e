// The browser reads the feed by the names the server's schema gives (issue 15, "the feed contract has one
// home"): frames generated from docs/feed-schema.json (exported from apps/market/feed/protocol.py) go
// through the real MarketSocket and store; every server frame type is handled, and every message the
// socket sends is a valid client message.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mock, test } from "node:test";
import fc from "fast-check";

import { applyQuoteUpdates, QUOTE_FIELDS } from "../../static/src/store.js";
import { MarketSocket } from "../../static/src/ws.js";
import { sockets, useScriptedSockets } from "./scripted-socket.mjs";

const SCHEMA = JSON.parse(readFileSync(new URL("../../docs/feed-schema.json", import.meta.url), "utf8"));
const RUNS = { numRuns: 150 };
// Server frames the browser takes note of and need no action: the acknowledgements of its own messages.
const ACKNOWLEDGEMENTS = new Set(["subscribed", "unsubscribed", "pong"]);
// What the dashboard reads from an error frame (static/src/feed-panel.js logs them).
const ERROR_FIELDS = ["code", "message"];

// --- a JSON Schema subset (what pydantic exports for the feed): generate values, validate values -------
function resolve(root, schema) {
  if (!schema.$ref) return schema;
  const name = schema.$ref.replace("#/$defs/", "");
  return resolve(root, root.$defs[name]);
}

// Values as they arrive over the wire (plain JSON objects).
const wire = (arb) => arb.map((value) => JSON.parse(JSON.stringify(value)));

function arbitrary(root, schema) {
  return wire(generator(root, schema));
}

function generator(root, schema) {
  const s = resolve(root, schema);
  if (s.anyOf) return fc.oneof(...s.anyOf.map((option) => arbitrary(root, option)));
  if ("const" in s) return fc.constant(s.const);
  if (s.enum) return fc.constantFrom(...s.enum);
  switch (s.type) {
    case "string":
      return fc.string({ minLength: s.minLength ?? 0, maxLength: s.maxLength ?? 12 });
    case "integer":
      return fc.integer({ min: 0, max: 2 ** 42 });
    case "number":
      return fc.double({ min: -1e6, max: 1e6, noNaN: true });
    case "boolean":
      return fc.boolean();
    case "null":
      return fc.constant(null);
    case "array":
      return fc.array(arbitrary(root, s.items), { maxLength: Math.min(s.maxItems ?? 8, 8) });
    case "object": {
      const properties = Object.fromEntries(
        Object.entries(s.properties ?? {}).map(([name, property]) => [name, arbitrary(root, property)]),
      );
      return fc.record(properties, { requiredKeys: s.required ?? [] });
    }
    default:
      throw new Error(`feed-schema.json: no generator for ${JSON.stringify(s)}`);
  }
}

// The problems of `value` against `schema` (empty when it is valid).
function problems(root, schema, value, where = "$") {
  const s = resolve(root, schema);
  if (s.anyOf) {
    const each = s.anyOf.map((option) => problems(root, option, value, where));
    return each.some((found) => found.length === 0) ? [] : [`${where}: matches none of anyOf (${each.flat()})`];
  }
  if ("const" in s && value !== s.const) return [`${where}: expected ${s.const}`];
  if (s.enum && !s.enum.includes(value)) return [`${where}: expected one of ${s.enum}`];
  const type = value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
  const expected = { integer: "number", number: "number" }[s.type] ?? s.type;
  if (expected && type !== expected) return [`${where}: expected ${s.type}, got ${type}`];
  if (s.type === "array") return value.flatMap((item, i) => problems(root, s.items, item, `${where}[${i}]`));
  if (s.type !== "object") return [];
  const found = (s.required ?? []).filter((name) => !(name in value)).map((name) => `${where}.${name}: missing`);
  for (const [name, item] of Object.entries(value)) {
    if (!(name in (s.properties ?? {}))) {
      if (s.additionalProperties === false) found.push(`${where}.${name}: not in the schema`);
    } else found.push(...problems(root, s.properties[name], item, `${where}.${name}`));
  }
  return found;
}

const serverFrames = SCHEMA.server_frame;
const frameVariants = serverFrames.anyOf.map((option) => resolve(serverFrames, option));
const frameTypes = (variant) => ("const" in variant.properties.type ? [variant.properties.type.const] : variant.properties.type.enum);
const variantOf = (type) => frameVariants.find((variant) => frameTypes(variant).includes(type));

// --- a scripted WebSocket and a socket whose every on* callback is recorded --------------------------
useScriptedSockets();

// A MarketSocket given a recording callback for whatever on* option it reads (a new frame's handler too).
function recordedSocket() {
  const calls = [];
  const options = new Proxy(
    { url: "ws://test/ws/market/" },
    {
      get(target, name) {
        if (name in target) return target[name];
        if (typeof name === "string" && name.startsWith("on") && name !== "onStatus")
          return (...args) => calls.push({ callback: name, args });
        if (name === "onStatus") return () => {};
        return undefined;
      },
    },
  );
  return { socket: new MarketSocket(options), calls };
}

// --- the tests -----------------------------------------------------------------------------------------
test("the schema's generators make frames the schema accepts", () => {
  for (const variant of frameVariants) {
    fc.assert(
      fc.property(arbitrary(serverFrames, variant), (frame) => {
        assert.deepEqual(problems(serverFrames, serverFrames, frame), []);
      }),
      { numRuns: 100 },
    );
  }
});

test("every server frame type in the schema is handled by the browser or is an acknowledgement", () => {
  const types = frameVariants.flatMap(frameTypes);
  assert.ok(types.includes("stock_updates") && types.includes("error"), `frame types: ${types}`);
  for (const type of types) {
    const variant = variantOf(type);
    fc.assert(
      fc.property(arbitrary(serverFrames, variant), (generated) => {
        const frame = { ...generated, type };
        const { socket, calls } = recordedSocket();
        socket.receive(JSON.stringify(frame));
        if (ACKNOWLEDGEMENTS.has(type)) {
          assert.deepEqual(calls, [], `${type} is an acknowledgement: nothing to do`);
        } else {
          assert.ok(calls.length > 0, `${type} (docs/feed-schema.json): static/src/ws.js does nothing with it`);
        }
      }),
      { numRuns: 100 },
    );
  }
});

test("a stock_updates frame reaches the quotes under the schema's field names", () => {
  const update = resolve(serverFrames, variantOf("stock_updates").properties.updates.items);
  for (const field of ["symbol", "timestamp", ...QUOTE_FIELDS]) {
    assert.ok(field in update.properties, `the browser reads update.${field}; the schema's StockUpdate has no ${field}`);
  }
  fc.assert(
    fc.property(arbitrary(serverFrames, variantOf("stock_updates")), (frame) => {
      const { socket, calls } = recordedSocket();
      socket.receive(JSON.stringify(frame));
      const [{ callback, args }] = calls;
      assert.equal(callback, "onUpdates");
      assert.deepEqual(args[0], frame.updates);
      // Each symbol's last update in the frame is what its quote shows afterwards.
      const quotes = new Map(frame.updates.map((u) => [u.symbol, { symbol: u.symbol, timestamp: -1 }]));
      applyQuoteUpdates(quotes, args[0]);
      const latest = new Map();
      for (const u of frame.updates) if (u.timestamp >= (latest.get(u.symbol)?.timestamp ?? -1)) latest.set(u.symbol, u);
      for (const [symbol, u] of latest) {
        for (const field of QUOTE_FIELDS) assert.equal(quotes.get(symbol)[field], u[field], `${symbol}.${field}`);
      }
    }),
    RUNS,
  );
});

test("an error frame reaches onError with the fields the dashboard reads", () => {
  const variant = variantOf("error");
  for (const field of ERROR_FIELDS) assert.ok(field in variant.properties, `the schema's error frame has no ${field}`);
  fc.assert(
    fc.property(arbitrary(serverFrames, variant), (frame) => {
      const { socket, calls } = recordedSocket();
      socket.receive(JSON.stringify(frame));
      assert.deepEqual(calls, [{ callback: "onError", args: [frame] }]);
    }),
    RUNS,
  );
});

test("every message the socket sends is a client message of the schema", () => {
  const clientMessages = SCHEMA.client_message;
  const symbols = fc.array(fc.stringMatching(/^[A-Z]{1,10}$/), { maxLength: 40 });
  fc.assert(
    fc.property(fc.array(symbols, { minLength: 1, maxLength: 6 }), (wants) => {
      sockets.length = 0;
      const { socket } = recordedSocket();
      socket.connect();
      sockets[0].emit("open");
      for (const want of wants) socket.want(want);
      mock.timers.tick(25000); // a ping
      assert.ok(sockets[0].sent.some((message) => message.type === "ping"));
      for (const message of sockets[0].sent) assert.deepEqual(problems(clientMessages, clientMessages, message), []);
    }),
    RUNS,
  );
});
