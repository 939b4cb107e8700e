// The side panels: the live valuation adds up, and nothing a trader or the server names can inject
// markup (symbols and usernames are escaped wherever they are shown).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";

import { renderLeaderboard, renderPortfolio, renderWatchlist, valuePortfolio } from "../../static/src/panels.js";
import { trendPoints } from "../../static/src/table.js";

const RUNS = { numRuns: 200 };
const cents = fc.integer({ min: 1, max: 10_000_000 }).map((c) => c / 100);
const ticker = fc.stringMatching(/^[A-Z]{1,5}$/);
const holding = fc.record({ symbol: ticker, quantity: fc.integer({ min: 1, max: 10_000 }), average_cost: cents });

test("total value is cash plus each holding at the page's latest price, P&L against the starting cash", () => {
  fc.assert(
    fc.property(cents, cents, fc.uniqueArray(holding, { selector: (h) => h.symbol, maxLength: 20 }), fc.dictionary(ticker, cents), (cash, starting, holdings, live) => {
      const quotes = new Map(Object.entries(live).map(([s, price]) => [s, { price }]));
      const v = valuePortfolio({ cash, starting_cash: starting, holdings }, quotes);
      const expected = holdings.reduce((sum, h) => sum + h.quantity * (quotes.get(h.symbol)?.price ?? h.average_cost), cash);
      assert.ok(Math.abs(v.total - expected) < 1e-6 * Math.max(1, expected));
      assert.ok(Math.abs(v.pnl - (v.total - starting)) < 1e-6 * Math.max(1, Math.abs(v.total)));
      for (const h of v.holdings) assert.ok(Math.abs(h.pnl - (h.price - h.average) * h.quantity) < 1e-6 * Math.max(1, h.value));
    }),
    RUNS,
  );
});

const hostile = fc.string({ minLength: 1, maxLength: 20 }).map((s) => `<img src=x onerror=${s}>`);

test("hostile symbols and usernames never reach the page as markup", () => {
  fc.assert(
    fc.property(hostile, hostile, (symbol, username) => {
      const element = { innerHTML: "" };
      renderPortfolio(element, { cash: 1, starting_cash: 1, holdings: [{ symbol, quantity: 1, average_cost: 1 }] }, new Map());
      assert.ok(!element.innerHTML.includes("<img"));
      renderWatchlist(element, [symbol], new Map([[symbol, { price: 1, change_percent: 0 }]]));
      assert.ok(!element.innerHTML.includes("<img"));
      renderLeaderboard(element, { computed_at: new Date().toISOString(), entries: [{ rank: 1, username, total_value: 1, return_percent: 0 }] });
      assert.ok(!element.innerHTML.includes("<img"));
      assert.ok(element.innerHTML.includes("&lt;img"));
    }),
    RUNS,
  );
});

test("a sparkline stays inside its box for any price series", () => {
  fc.assert(
    fc.property(fc.array(cents, { maxLength: 100 }), (prices) => {
      const points = trendPoints(prices).split(" ").map((pair) => pair.split(",").map(Number));
      assert.equal(points.length, Math.max(2, prices.length));
      for (const [x, y] of points) assert.ok(x >= 0 && x <= 64 && y >= 0 && y <= 18, `${x},${y} outside the box`);
    }),
    RUNS,
  );
});
