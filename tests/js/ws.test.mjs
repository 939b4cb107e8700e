// The market socket keeps exactly the wanted symbols subscribed across reconnects (Error Handling:
// "WebSocket Disconnections: Automatic reconnection with subscription restoration"), and applies only
// stock_updates frames. A scripted WebSocket stands in for the browser's; timers are node's fake ones.
import assert from "node:assert/strict";
import { mock, test } from "node:test";
import fc from "fast-check";

import { MarketSocket } from "../../static/src/ws.js";
import { ScriptedSocket, sockets, useScriptedSockets } from "./scripted-socket.mjs";

const RUNS = { numRuns: 150 };
useScriptedSockets();

// What the server believes one connection is subscribed to, from the frames it received.
function serverView(socket) {
  const subscribed = new Set();
  for (const message of socket.sent) {
    if (message.type === "subscribe") for (const s of message.symbols) subscribed.add(s);
    if (message.type === "unsubscribe") for (const s of message.symbols) subscribed.delete(s);
  }
  return subscribed;
}

const symbol = fc.constantFrom(...Array.from({ length: 30 }, (_, i) => `S${i}`));
const step = fc.oneof(
  fc.record({ kind: fc.constant("want"), symbols: fc.array(symbol, { maxLength: 12 }) }),
  fc.record({ kind: fc.constant("drop") }),
  fc.record({ kind: fc.constant("reopen") }),
);

test("after any mix of wants and reconnects the server holds exactly the wanted symbols", () => {
  fc.assert(
    fc.property(fc.array(step, { maxLength: 25 }), fc.integer({ min: 1, max: 10 }), (steps, maxSymbols) => {
      sockets.length = 0;
      const statuses = [];
      const feed = new MarketSocket({ url: "ws://test/ws/market/", onUpdates: () => {}, onStatus: (s) => statuses.push(s), maxSymbols });
      feed.connect();
      sockets.at(-1).emit("open");
      let wanted = [];
      for (const action of steps) {
        const current = sockets.at(-1);
        if (action.kind === "want") {
          wanted = [...new Set(action.symbols)].slice(0, maxSymbols);
          feed.want(action.symbols);
        } else if (action.kind === "drop" && current.readyState === ScriptedSocket.OPEN) {
          current.emit("close");
          mock.timers.tick(60_000); // past any backoff: the socket reconnects
        } else if (action.kind === "reopen" && current.readyState === 0) {
          current.emit("open");
        }
      }
      const last = sockets.at(-1);
      if (last.readyState !== ScriptedSocket.OPEN) last.emit("open");
      assert.deepEqual([...serverView(last)].sort(), [...wanted].sort());
      for (const message of last.sent.filter((m) => m.type === "subscribe")) {
        assert.equal(new Set(message.symbols).size, message.symbols.length, "a symbol was subscribed twice in one message");
      }
      assert.equal(statuses.at(-1), "live");
    }),
    RUNS,
  );
});

test("only well-formed stock_updates frames reach the page; error frames reach onError", () => {
  const frame = fc.oneof(
    fc.record({ type: fc.constant("stock_updates"), updates: fc.array(fc.record({ symbol: symbol, price: fc.double({ min: 0.01, max: 1e6, noNaN: true }) })) }).map(JSON.stringify),
    fc.record({ type: fc.constant("error"), code: fc.string(), message: fc.string() }).map(JSON.stringify),
    fc.record({ type: fc.string(), updates: fc.anything() }).map(JSON.stringify),
    fc.string(),
  );
  fc.assert(
    fc.property(fc.array(frame, { maxLength: 20 }), (frames) => {
      const applied = [];
      const errors = [];
      const feed = new MarketSocket({ url: "ws://x", onUpdates: (u) => applied.push(u), onStatus: () => {}, onError: (e) => errors.push(e) });
      const warn = console.warn;
      console.warn = () => {};
      try {
        for (const text of frames) feed.receive(text);
      } finally {
        console.warn = warn;
      }
      const parsed = frames.map((text) => { try { return JSON.parse(text); } catch { return null; } });
      const updates = parsed.filter((m) => m?.type === "stock_updates" && Array.isArray(m.updates));
      assert.deepEqual(applied, updates.map((m) => m.updates));
      assert.equal(errors.length, parsed.filter((m) => m?.type === "error").length);
    }),
    RUNS,
  );
});
