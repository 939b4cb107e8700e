// Error Handling, "Message Queue Overflow: backpressure application and client notification": the server tells
// a connection that falls behind with a {"type":"notice","code":"updates_conflated"} frame; the socket hands every
// such notice, and nothing else, to the page's onNotice (which shows it), in the order the frames came.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";

import { MarketSocket } from "../../static/src/ws.js";

const notice = fc.record({
  type: fc.constant("notice"),
  code: fc.oneof(fc.constant("updates_conflated"), fc.string()),
  message: fc.string(),
  timestamp: fc.nat(),
});
const other = fc.oneof(
  fc.record({ type: fc.constant("stock_updates"), updates: fc.array(fc.record({ symbol: fc.constant("AAA"), price: fc.integer({ min: 1, max: 1e6 }) })) }),
  fc.record({ type: fc.constant("error"), code: fc.string(), message: fc.string() }),
  fc.record({ type: fc.constant("notice"), code: fc.oneof(fc.integer(), fc.constant(null)) }), // malformed: no code text
  fc.record({ type: fc.string(), code: fc.string() }),
);

test("every notice frame reaches onNotice once and in order; no other frame does", () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(notice, other), { maxLength: 30 }), (messages) => {
      const told = [];
      const updates = [];
      const errors = [];
      const feed = new MarketSocket({
        url: "ws://x",
        onUpdates: (u) => updates.push(u),
        onStatus: () => {},
        onError: (e) => errors.push(e),
        onNotice: (n) => told.push(n),
      });
      const frames = messages.map((m) => JSON.stringify(m));
      for (const frame of frames) feed.receive(frame);
      const sent = frames.map((frame) => JSON.parse(frame));
      assert.deepEqual(told, sent.filter((m) => m.type === "notice" && typeof m.code === "string"));
      assert.equal(updates.length, sent.filter((m) => m.type === "stock_updates" && Array.isArray(m.updates)).length);
      assert.equal(errors.length, sent.filter((m) => m.type === "error").length);
    }),
    { numRuns: 200 },
  );
});

test("a socket built without onNotice ignores notices (older pages keep working)", () => {
  const feed = new MarketSocket({ url: "ws://x", onUpdates: () => assert.fail("not an update"), onStatus: () => {} });
  feed.receive(JSON.stringify({ type: "notice", code: "updates_conflated", message: "behind", timestamp: 1 }));
});
