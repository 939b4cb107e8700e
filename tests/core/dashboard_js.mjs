// Runs the dashboard's real browser modules under node for the Python property tests.
// Protocol: one JSON request per stdin line {"fn": name, "args": {...}}, one JSON answer per stdout line.

import { createInterface } from "node:readline";
import { createBatcher, mergeLatest } from "../../static/src/batching.js";
import { applyQuoteUpdates, createStore } from "../../static/src/store.js";
import { shouldVirtualise, visibleRange } from "../../static/src/virtual.js";

// Frames arrive at the given times; timers fire exactly when due (a fake clock). Returns each apply.
function simulateBatcher({ intervalMs, arrivals }) {
  let clock = 0;
  const timers = [];
  const applies = [];
  const batcher = createBatcher({
    intervalMs,
    now: () => clock,
    setTimer: (callback, ms) => timers.push({ due: clock + ms, callback }),
    apply: (batch) => applies.push({ at: clock, batch }),
  });
  const events = arrivals.map((a, order) => ({ ...a, order })).sort((x, y) => x.at - y.at || x.order - y.order);
  for (const arrival of events) {
    for (;;) {
      timers.sort((x, y) => x.due - y.due);
      if (!timers.length || timers[0].due > arrival.at) break;
      const timer = timers.shift();
      clock = timer.due;
      timer.callback();
    }
    clock = arrival.at;
    batcher.push(arrival.updates);
  }
  while (timers.length) {
    timers.sort((x, y) => x.due - y.due);
    const timer = timers.shift();
    clock = timer.due;
    timer.callback();
  }
  return { applies };
}

function quoteUpdates({ quotes, updates }) {
  const map = new Map(quotes.map((q) => [q.symbol, { ...q }]));
  const changes = applyQuoteUpdates(map, updates);
  return { changes: Object.fromEntries(changes), quotes: [...map.values()] };
}

function storeSequence({ initial, sets }) {
  const store = createStore(initial);
  const notified = {};
  for (const slice of Object.keys(initial)) store.subscribe(slice, () => (notified[slice] = (notified[slice] ?? 0) + 1));
  for (const [slice, value] of sets) store.set(slice, value);
  return { notified };
}

const functions = {
  visibleRange: (args) => ({ ...visibleRange(args), virtualise: shouldVirtualise(args.total) }),
  simulateBatcher,
  mergeLatest: ({ updates }) => [...mergeLatest(new Map(), updates).values()],
  quoteUpdates,
  storeSequence,
};

for await (const line of createInterface({ input: process.stdin })) {
  try {
    const { fn, args } = JSON.parse(line);
    process.stdout.write(JSON.stringify({ ok: functions[fn](args) }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ error: String(error?.stack ?? error) }) + "\n");
  }
}
