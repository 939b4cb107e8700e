// The market table (static/src/table.js) on a real DOM (linkedom): what a quote update touches
// (Property 16) and which rows exist above the virtualisation threshold (Property 18).
// Stubbed, because linkedom has no layout: ResizeObserver, getComputedStyle (it reads the viewport's
// inline `--row-height`), the viewport's clientHeight and a browser's clamping of scrollTop. The flash
// timer runs on node's mock timers (performance.now follows the mock clock): no real sleeps.
import assert from "node:assert/strict";
import { mock, test } from "node:test";
import fc from "fast-check";
import { parseHTML } from "linkedom";

import { formatPercent, formatPrice, formatSigned, formatVolume } from "../../static/src/format.js";
import { applyQuoteUpdates } from "../../static/src/store.js";
import { MarketTable, trendPoints } from "../../static/src/table.js";

const RUNS = { numRuns: 150 };
const THRESHOLD = 50; // the document's: "for any stock list exceeding 50 items"
const OVERSCAN = 4; // rows the table keeps on each side of the viewport (static/src/virtual.js)
const FLASH_MS = 600;
// table.js clears a flash whose end is within 1 ms (timer slack), so one relit 1 ms before the last
// one's timer may go dark up to 1 ms early; never later than 600 ms, never earlier than 599.
const FLASH_SLACK_MS = 1;
const TEXT = { price: formatPrice, change: formatSigned, change_percent: formatPercent, volume: formatVolume };

const { window, document, MutationObserver } = parseHTML("<!doctype html><html><body></body></html>");
globalThis.document = document;
globalThis.getComputedStyle = (element) => ({ getPropertyValue: (name) => element.style.getPropertyValue(name) });
const resizeObservers = [];
globalThis.ResizeObserver = class {
  constructor(callback) {
    this.callback = callback;
  }
  observe(element) {
    resizeObservers.push({ element, callback: this.callback });
  }
};

// A viewport as a browser lays it out: `height` px tall, scrollTop clamped to the spacer's height.
function makeViewport(height, rowHeight) {
  const viewport = document.createElement("div");
  viewport.style.setProperty("--row-height", `${rowHeight}px`);
  document.body.replaceChildren(viewport);
  resizeObservers.length = 0; // the previous example's table is gone with its viewport
  let top = 0;
  const box = { height };
  Object.defineProperty(viewport, "clientHeight", { get: () => box.height });
  Object.defineProperty(viewport, "scrollTop", {
    get: () => top,
    set: (value) => {
      const content = Number.parseFloat(viewport.firstChild?.style.height) || 0;
      top = Math.min(Math.max(0, value), Math.max(0, content - box.height));
    },
  });
  const scrollTo = (value) => {
    viewport.scrollTop = value;
    viewport.dispatchEvent(new window.Event("scroll"));
  };
  const resize = (value) => {
    box.height = value;
    for (const o of resizeObservers) if (o.element === viewport) o.callback([]);
  };
  return { viewport, scrollTo, resize };
}

const cents = (min, max) => fc.integer({ min, max }).map((c) => c / 100);
const quoteOf = (symbol) =>
  fc.record({ price: cents(1, 100_000), change: cents(-500, 500), change_percent: cents(-900, 900), volume: fc.integer({ min: 0, max: 1e7 }) }).map((q) => ({ symbol, name: `${symbol} Inc`, timestamp: 1, ...q }));

function makeTable({ viewportHeight, rowHeight, quotes }) {
  const { viewport, scrollTo, resize } = makeViewport(viewportHeight, rowHeight);
  const trends = new Map([...quotes.keys()].map((s) => [s, [quotes.get(s).price]]));
  const ranges = [];
  const table = new MarketTable({
    viewport,
    quotes,
    trends,
    isWatched: () => false,
    onOpen: () => {},
    onToggleWatch: () => {},
    onRangeChange: (symbols) => ranges.push(symbols),
  });
  return { table, viewport, trends, ranges, scrollTo, resize };
}

const symbolsOf = (n) => Array.from({ length: n }, (_, i) => `S${String(i).padStart(4, "0")}`);
const domRows = (viewport) => [...viewport.querySelectorAll(".mt-row")];

// The rows the table must hold, computed here from the geometry (not by the table's own helper).
function expectedRows(order, { scrollTop, height, rowHeight }) {
  if (order.length <= THRESHOLD) return order.map((symbol, index) => ({ symbol, index }));
  const top = Math.min(Math.max(0, scrollTop), Math.max(0, order.length * rowHeight - height));
  const first = Math.max(0, Math.floor(top / rowHeight) - OVERSCAN);
  const end = Math.min(order.length, Math.ceil((top + height) / rowHeight) + OVERSCAN);
  return order.slice(first, end).map((symbol, i) => ({ symbol, index: first + i }));
}

function assertRowShows(row, quote) {
  for (const [field, format] of Object.entries(TEXT)) assert.equal(row.querySelector(`.c-${field}`).textContent, format(quote[field]));
  assert.equal(row.querySelector(".c-name").textContent, quote.name);
}

// --- Property 18 -----------------------------------------------------------------------------------

const layout = fc
  .record({ count: fc.integer({ min: 0, max: 1_500 }), rowHeight: fc.integer({ min: 10, max: 60 }), height: fc.integer({ min: 1, max: 1_500 }) })
  .chain((g) =>
    fc.record({
      ...Object.fromEntries(Object.entries(g).map(([k, v]) => [k, fc.constant(v)])),
      order: fc.shuffledSubarray(symbolsOf(g.count), { minLength: g.count, maxLength: g.count }),
      steps: fc.array(
        fc.oneof(
          fc.record({ scroll: fc.integer({ min: -200, max: g.count * g.rowHeight + 200 }) }),
          fc.record({ resize: fc.integer({ min: 1, max: 1_500 }) }),
          fc.record({ reorder: fc.shuffledSubarray(symbolsOf(g.count)) }),
        ),
        { maxLength: 8 },
      ),
    }),
  );

test("Property 18: above 50 rows only the rows in view (plus the overscan) exist in the DOM, for any size, scroll and order", () => {
  fc.assert(
    fc.property(layout, ({ count, rowHeight, height, order, steps }) => {
      const quotes = new Map(symbolsOf(count).map((s, i) => [s, { symbol: s, name: `${s} Inc`, price: i + 1, change: 0, change_percent: 0, volume: i, timestamp: 1 }]));
      const t = makeTable({ viewportHeight: height, rowHeight, quotes });
      let rows = order;
      let box = height;
      t.table.setRows(rows);
      const check = () => {
        const want = expectedRows(rows, { scrollTop: t.viewport.scrollTop, height: box, rowHeight });
        const got = domRows(t.viewport);
        assert.equal(t.viewport.classList.contains("mt-plain"), rows.length <= THRESHOLD, "virtual exactly above 50 rows");
        assert.deepEqual(
          got.map((r) => r.dataset.symbol).sort(),
          want.map((w) => w.symbol).sort(),
        );
        if (rows.length > THRESHOLD) assert.ok(got.length <= Math.ceil(box / rowHeight) + 1 + 2 * OVERSCAN);
        const at = new Map(want.map((w) => [w.symbol, w.index]));
        for (const row of got) {
          const index = at.get(row.dataset.symbol);
          assert.equal(row.getAttribute("aria-rowindex"), String(index + 1));
          if (rows.length > THRESHOLD) assert.equal(row.style.transform, `translateY(${index * rowHeight}px)`);
          assertRowShows(row, quotes.get(row.dataset.symbol)); // a recycled row shows its new symbol
        }
        assert.deepEqual(t.ranges.at(-1) ?? [], want.map((w) => w.symbol)); // the feed subscribes to these
      };
      check();
      for (const step of steps) {
        if ("scroll" in step) t.scrollTo(step.scroll);
        if ("resize" in step) {
          box = step.resize;
          t.resize(box);
        }
        if ("reorder" in step) {
          rows = step.reorder;
          t.table.setRows(rows);
        }
        check();
      }
    }),
    RUNS,
  );
});

// --- Property 16 -----------------------------------------------------------------------------------

// Every node under the viewport (text nodes included: a rewritten text is a new node) with a print
// of itself and its parent, to compare after.
function snapshot(viewport) {
  const nodes = new Map();
  const walk = (node, parent) => {
    const attributes = node.attributes ? [...node.attributes].map((a) => `${a.name}=${a.value}`).join(" ") : "";
    nodes.set(node, { parent, print: node.nodeType === 3 ? node.data : `${attributes}|${node.childNodes.length}` });
    for (const child of node.childNodes) walk(child, node);
  };
  walk(viewport, null);
  return nodes;
}

// The elements whose DOM changed between two snapshots, or that `records` (a MutationObserver's, so a
// write of an unchanged value counts too) name: a text node stands for its element.
function touchedElements(before, after, records = []) {
  const owner = (node, map) => (node.nodeType === 3 ? map.get(node)?.parent ?? node.parentNode : node);
  const touched = new Set();
  for (const [node, { print }] of after) if (before.get(node)?.print !== print) touched.add(owner(node, after));
  for (const node of before.keys()) if (!after.has(node)) touched.add(owner(node, before));
  for (const record of records) {
    if (record.type === "attributes") touched.add(record.target);
    for (const node of record.addedNodes) touched.add(owner(node, after));
    for (const node of record.removedNodes) touched.add(owner(node, before));
  }
  return touched;
}

const market = fc.integer({ min: 1, max: 120 }).chain((count) =>
  fc.record({
    count: fc.constant(count),
    quotes: fc.tuple(...symbolsOf(count).map(quoteOf)),
    scroll: fc.integer({ min: 0, max: count * 28 }),
    height: fc.integer({ min: 28, max: 900 }),
    batches: fc.array(
      fc.record({
        wait: fc.oneof(fc.integer({ min: 0, max: 1_000 }), fc.constantFrom(1, 599, 600, 601)), // and the flash's edges
        updates: fc.array(
          fc.record({
            symbol: fc.constantFrom(...symbolsOf(count)),
            // each field either keeps its value or moves, so a batch mixes changed and unchanged cells
            price: fc.option(cents(1, 100_000), { nil: undefined }),
            change: fc.option(cents(-500, 500), { nil: undefined }),
            change_percent: fc.option(cents(-900, 900), { nil: undefined }),
            volume: fc.option(fc.integer({ min: 0, max: 1e7 }), { nil: undefined }),
            timestamp: fc.integer({ min: 0, max: 5 }),
          }),
          { maxLength: 12 },
        ),
      }),
      { minLength: 1, maxLength: 6 },
    ),
  }),
);

// The cells a batch may write: each changed field's cell, and the sparkline when the price moved.
function allowedNodes(viewport, changes) {
  const allowed = new Set();
  for (const [symbol, change] of changes) {
    const row = viewport.querySelector(`.mt-row[data-symbol="${symbol}"]`);
    if (!row) continue; // off screen: filled when it scrolls in
    for (const field of change.fields) allowed.add(row.querySelector(`.c-${field}`));
    if (change.fields.includes("price")) allowed.add(row.querySelector(".c-trend polyline"));
  }
  return allowed;
}

test("Property 16: a quote update rewrites only its own row's changed cells; every other node is untouched", () => {
  fc.assert(
    fc.property(market, ({ count, quotes: start, scroll, height, batches }) => {
      mock.timers.enable({ apis: ["setTimeout", "Date"], now: 0 });
      const clock = mock.method(performance, "now", () => Date.now());
      try {
        const quotes = new Map(start.map((q) => [q.symbol, { ...q }]));
        const t = makeTable({ viewportHeight: height, rowHeight: 28, quotes });
        t.table.setRows(symbolsOf(count));
        t.scrollTo(scroll);
        const observer = new MutationObserver(() => {});
        observer.observe(t.viewport, { subtree: true, childList: true, attributes: true, characterData: true });
        const litAt = new Map(); // price cell -> when it last flashed
        const timers = []; // { cell, due }: each flash's timer, which may write its cell when it fires
        for (const { wait, updates } of batches) {
          // The flash timers: within `wait` ms only the price cells whose timer fired may be written,
          // and only to go dark; a cell is dark 600 ms after its last flash, and lit until then.
          let before = snapshot(t.viewport);
          observer.takeRecords();
          mock.timers.tick(wait);
          const fired = new Set(timers.filter((timer) => timer.due <= Date.now()).map((timer) => timer.cell));
          for (const node of touchedElements(before, snapshot(t.viewport), observer.takeRecords())) {
            assert.ok(fired.has(node), "only a cell whose flash timer fired may change");
            assert.equal(node.className, "c-price");
          }
          timers.splice(0, timers.length, ...timers.filter((timer) => timer.due > Date.now()));
          for (const [cell, at] of litAt) {
            const age = Date.now() - at;
            if (age < FLASH_MS - FLASH_SLACK_MS) assert.match(cell.className, /flash-/);
            if (age >= FLASH_MS) assert.doesNotMatch(cell.className, /flash-/);
          }

          // The batch as the feed applies it: the real store's diff, the trend, then the table.
          const sent = updates.map((u) => Object.fromEntries(Object.entries({ ...quotes.get(u.symbol), ...u }).filter(([, v]) => v !== undefined)));
          const changes = applyQuoteUpdates(quotes, sent);
          for (const [symbol, change] of changes) if (change.fields.includes("price")) t.trends.get(symbol).push(quotes.get(symbol).price);
          const allowed = allowedNodes(t.viewport, changes);
          const rowsBefore = domRows(t.viewport);
          before = snapshot(t.viewport);
          observer.takeRecords();
          t.table.applyChanges(changes);
          const touched = touchedElements(before, snapshot(t.viewport), observer.takeRecords());
          assert.deepEqual(domRows(t.viewport), rowsBefore); // no row built, removed or replaced
          for (const node of touched) assert.ok(allowed.has(node), `untouched node changed: ${node.outerHTML}`);
          for (const [symbol, change] of changes) {
            const row = t.viewport.querySelector(`.mt-row[data-symbol="${symbol}"]`);
            if (!row) continue;
            assertRowShows(row, quotes.get(symbol));
            assert.equal(row.querySelector(".c-trend polyline").getAttribute("points"), trendPoints(t.trends.get(symbol)));
            if (change.fields.includes("price") && change.direction) {
              const cell = row.querySelector(".c-price");
              assert.equal(cell.className, `c-price flash-${change.direction > 0 ? "up" : "down"}`);
              litAt.set(cell, Date.now());
              timers.push({ cell, due: Date.now() + FLASH_MS });
            }
          }
        }
        // Rows that were off screen during the updates show the latest quotes once scrolled to.
        for (const target of [0, count * 14, count * 28]) {
          t.scrollTo(target);
          for (const row of domRows(t.viewport)) assertRowShows(row, quotes.get(row.dataset.symbol));
        }
      } finally {
        clock.mock.restore();
        mock.timers.reset();
      }
    }),
    RUNS,
  );
});
