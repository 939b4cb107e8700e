// Feature: trading-performance-optimization, front-end retries (Error Handling: "API Request Failures:
// Retry logic with exponential backoff"; "WebSocket Connection Loss: Automatic reconnection").
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";

import { backoffDelay } from "../../static/src/backoff.js";

const RUNS = { numRuns: 200 };
const options = fc.record({
  baseMs: fc.integer({ min: 1, max: 5_000 }),
  maxMs: fc.integer({ min: 1, max: 60_000 }),
});

test("a delay lies between half and all of the exponential ceiling, never above the cap", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 60 }), options, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, { baseMs, maxMs }, r) => {
      const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
      const delay = backoffDelay(attempt, { baseMs, maxMs, random: () => r });
      assert.ok(delay >= Math.floor(ceiling / 2) && delay <= ceiling, `${delay} outside [${ceiling / 2}, ${ceiling}]`);
    }),
    RUNS,
  );
});

test("the ceiling grows exponentially with the attempt until the cap", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 40 }), options, (attempt, { baseMs, maxMs }) => {
      const top = (n) => backoffDelay(n, { baseMs, maxMs, random: () => 1 - Number.EPSILON });
      const next = top(attempt + 1);
      assert.ok(next >= top(attempt), "the delay shrank as attempts grew");
      if (baseMs * 2 ** (attempt + 1) <= maxMs) assert.ok(Math.abs(next - 2 * top(attempt)) <= 1, "not doubling below the cap");
    }),
    RUNS,
  );
});

test("a negative attempt is treated as the first one", () => {
  fc.assert(
    fc.property(fc.integer({ min: -1_000, max: -1 }), (attempt) => {
      assert.equal(backoffDelay(attempt, { random: () => 0.5 }), backoffDelay(0, { random: () => 0.5 }));
    }),
    RUNS,
  );
});
