// The order ticket's rules: fields by type, the body sent, checks before sending, the API's 422s by field.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";

import { ORDER_TYPES, fieldErrors, orderBody, timesInForce, validateOrder, visibleFields } from "../../static/src/order-form.js";

const values = (overrides = {}) => ({
  symbol: "ACME",
  side: "buy",
  type: "market",
  quantity: "3",
  limit_price: "",
  stop_price: "",
  time_in_force: "day",
  ...overrides,
});

test("each type shows its own fields: limit price for limits, stop price for stops, time in force unless market", () => {
  assert.deepEqual(visibleFields("market"), { limit_price: false, stop_price: false, time_in_force: false });
  assert.deepEqual(visibleFields("limit"), { limit_price: true, stop_price: false, time_in_force: true });
  assert.deepEqual(visibleFields("stop"), { limit_price: false, stop_price: true, time_in_force: true });
  assert.deepEqual(visibleFields("stop_limit"), { limit_price: true, stop_price: true, time_in_force: true });
});

test("Property: a body carries exactly the fields its type shows, and a market body is today's", () => {
  const price = fc.integer({ min: 1, max: 10_000_000 }).map((cents) => (cents / 100).toFixed(2));
  fc.assert(
    fc.property(fc.constantFrom(...ORDER_TYPES), price, price, fc.constantFrom("day", "gtc"), (type, limit, stop, tif) => {
      const body = orderBody(values({ type, limit_price: limit, stop_price: stop, time_in_force: tif }), "id-1");
      const shown = visibleFields(type);
      assert.equal("limit_price" in body, shown.limit_price);
      assert.equal("stop_price" in body, shown.stop_price);
      assert.equal("time_in_force" in body, shown.time_in_force);
      assert.equal("type" in body, type !== "market");
      assert.deepEqual(validateOrder(values({ type, limit_price: limit, stop_price: stop, time_in_force: tif })), {});
    }),
    { numRuns: 200 },
  );
});

test("ioc and fok are offered for limit orders only; a stop with one is named before sending", () => {
  assert.deepEqual(timesInForce("limit"), ["day", "gtc", "ioc", "fok"]);
  for (const type of ["stop", "stop_limit"]) assert.deepEqual(timesInForce(type), ["day", "gtc"]);
  assert.deepEqual(validateOrder(values({ type: "limit", limit_price: "9.50", time_in_force: "ioc" })), {});
  const stop = validateOrder(values({ type: "stop", stop_price: "11.00", time_in_force: "fok" }));
  assert.deepEqual(Object.keys(stop), ["time_in_force"]);
});

test("bad input is named by its field before anything is sent", () => {
  assert.deepEqual(Object.keys(validateOrder(values({ quantity: "0" }))), ["quantity"]);
  assert.deepEqual(Object.keys(validateOrder(values({ type: "limit", limit_price: "-1" }))), ["limit_price"]);
  assert.deepEqual(Object.keys(validateOrder(values({ type: "stop_limit", limit_price: "1.234", stop_price: "x" }))), [
    "limit_price",
    "stop_price",
  ]);
  assert.deepEqual(validateOrder(values({ type: "market", limit_price: "nonsense" })), {}); // hidden: ignored
});

test("the API's refusals map to the field they name; the rest to the form", () => {
  assert.deepEqual(fieldErrors({ detail: "limit_price must be above 0", code: "invalid_price", field: "limit_price" }, "x"), {
    limit_price: "limit_price must be above 0",
  });
  const validation = { detail: [{ loc: ["body", "payload", "stop_price"], msg: "Field required" }] };
  assert.deepEqual(fieldErrors(validation, "x"), { stop_price: "stop_price: Field required" });
  assert.deepEqual(fieldErrors({ detail: "busy", code: "busy", field: "client_order_id" }, "x"), { form: "busy" });
  assert.deepEqual(fieldErrors(null, "Request failed"), { form: "Request failed" });
});
