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

// DOM cell writes of each page for the same feed: the optimised one writes the changed cells of rows on
// screen once per apply; the naive one rebuilds every row (8 cells) on every frame.
const CELLS_PER_ROW = 8;
function renderCost({ total, scrollTop, viewportHeight, rowHeight, intervalMs, frames }) {
  const symbols = Array.from({ length: total }, (_, i) => `S${i}`);
  const range = visibleRange({ scrollTop, viewportHeight, rowHeight, total });
  const onScreen = new Set(symbols.slice(range.start, range.end));
  // the feed only sends what the page subscribed to: the rows on screen
  const fed = frames.map((f) => ({ at: f.at, updates: f.updates.filter((u) => onScreen.has(symbols[u.row % total])).map((u) => ({ ...u, symbol: symbols[u.row % total] })) }));
  const quotes = new Map(symbols.map((s) => [s, { symbol: s, price: 1, change: 0, change_percent: 0, volume: 0, timestamp: 0 }]));
  let optimised = 0;
  for (const apply of simulateBatcher({ intervalMs, arrivals: fed }).applies) {
    for (const change of applyQuoteUpdates(quotes, apply.batch).values()) optimised += change.fields.length + 1; // + trend
  }
  const naive = fed.filter((f) => f.updates.length).length * total * CELLS_PER_ROW;
  return { optimised, naive, rowsInDom: range.end - range.start };
}

const functions = {
  renderCost,
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
