// The API client: what it retries (Error Handling: "API Request Failures: Retry logic with exponential
// backoff") and the API's own message on a refusal. Timers are node's fake timers: no real waiting.
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";
import fc from "fast-check";

import { ApiError, createApi, errorMessage } from "../../static/src/api.js";

const RUNS = { numRuns: 100 };

beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
afterEach(() => mock.timers.reset());

// A fetch that answers the given statuses in turn and counts its calls.
function scriptedFetch(statuses) {
  const calls = [];
  globalThis.fetch = async (path, init) => {
    const status = statuses[Math.min(calls.length, statuses.length - 1)];
    calls.push({ path, init });
    const body = status < 400 ? { ok: true } : { detail: `refused with ${status}`, code: "refused" };
    return { ok: status < 400, status, json: async () => body };
  };
  return calls;
}

// Run a request to its end, advancing the fake clock through every backoff sleep.
async function settle(promise) {
  let outcome;
  promise.then((value) => (outcome = { value }), (error) => (outcome = { error }));
  for (let step = 0; outcome === undefined && step < 1_000; step++) {
    await new Promise((resolve) => setImmediate(resolve));
    mock.timers.tick(20_000);
  }
  assert.ok(outcome, "the request never settled");
  return outcome;
}

const failing = fc.constantFrom(429, 500, 502, 503);
const refusing = fc.constantFrom(400, 401, 403, 404, 409, 422);

test("a GET is retried on 5xx and 429 at most `retries` times, then fails with the status", async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 5 }), failing, async (retries, status) => {
      const calls = scriptedFetch([status]);
      const { error } = await settle(createApi({ csrfToken: "t", retries }).get("/api/v1/me"));
      assert.ok(error instanceof ApiError);
      assert.equal(error.status, status);
      assert.equal(calls.length, retries + 1);
    }),
    RUNS,
  );
});

test("a GET that recovers within its retries returns the answer", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(failing, { maxLength: 3 }), async (failures) => {
      const calls = scriptedFetch([...failures, 200]);
      const { value } = await settle(createApi({ csrfToken: "t", retries: 3 }).get("/api/v1/me"));
      assert.deepEqual(value, { ok: true });
      assert.equal(calls.length, failures.length + 1);
    }),
    RUNS,
  );
});

test("a POST without a client_order_id is never repeated; one with it is", async () => {
  await fc.assert(
    fc.asyncProperty(failing, fc.boolean(), async (status, idempotent) => {
      const calls = scriptedFetch([status]);
      const body = idempotent ? { symbol: "ACME", client_order_id: "x1" } : { symbol: "ACME" };
      const { error } = await settle(createApi({ csrfToken: "t", retries: 2 }).post("/api/v1/orders", body));
      assert.equal(error.status, status);
      assert.equal(calls.length, idempotent ? 3 : 1);
    }),
    RUNS,
  );
});

test("a 4xx refusal is never retried and carries the API's message and code", async () => {
  await fc.assert(
    fc.asyncProperty(refusing, fc.constantFrom("get", "post"), async (status, method) => {
      const calls = scriptedFetch([status]);
      const api = createApi({ csrfToken: "secret" });
      const request = method === "get" ? api.get("/x") : api.post("/x", { client_order_id: "c" });
      const { error } = await settle(request);
      assert.equal(calls.length, 1);
      assert.equal(error.message, `refused with ${status}`);
      assert.equal(error.code, "refused");
      if (method === "post") assert.equal(calls[0].init.headers["X-CSRFToken"], "secret");
    }),
    RUNS,
  );
});

test("errorMessage names every field of a validation error and never returns nothing", () => {
  const item = fc.record({ loc: fc.array(fc.constantFrom("body", "payload", "quantity", "symbol"), { maxLength: 4 }), msg: fc.string({ minLength: 1 }) });
  fc.assert(
    fc.property(fc.array(item, { minLength: 1, maxLength: 5 }), fc.integer({ min: 400, max: 599 }), (items, status) => {
      const text = errorMessage({ detail: items }, status);
      for (const { loc, msg } of items) {
        assert.ok(text.includes(`${loc.filter((part) => part !== "body").join(".")}: ${msg}`), `${text} lacks ${msg}`);
      }
      assert.ok(errorMessage(null, status).includes(String(status)));
      assert.ok(errorMessage({}, status).includes(String(status)));
    }),
    RUNS,
  );
});
