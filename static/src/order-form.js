// The order ticket's rules: which fields each order type shows, the body it sends, the checks made before
// sending, and the API's refusals mapped back to the field at fault. Pure: no DOM, no network.

export const ORDER_TYPES = ["market", "limit", "stop", "stop_limit"];
export const TIME_IN_FORCE = ["day", "gtc", "ioc", "fok"];
const IMMEDIATE = ["ioc", "fok"]; // filled when placed or cancelled: for limit orders (a stop waits for its price)

// The times in force an order type takes.
export function timesInForce(type) {
  return type === "limit" ? TIME_IN_FORCE : TIME_IN_FORCE.filter((tif) => !IMMEDIATE.includes(tif));
}
export const TICKET_FIELDS = ["quantity", "limit_price", "stop_price", "time_in_force"];

// The fields shown for an order type (a market order fills at once: no prices, no time in force).
export function visibleFields(type) {
  return {
    limit_price: type === "limit" || type === "stop_limit",
    stop_price: type === "stop" || type === "stop_limit",
    time_in_force: type !== "market",
  };
}

const PRICE = /^\d{1,12}(\.\d{1,2})?$/;

function checkPrice(text, label) {
  const value = String(text ?? "").trim();
  if (!PRICE.test(value) || Number(value) <= 0) return `${label}: enter a price above 0 with at most 2 decimals.`;
  return null;
}

// { field: message } for what is wrong before anything is sent (the server checks again).
export function validateOrder(values) {
  const errors = {};
  const quantity = Number(values.quantity);
  if (!Number.isInteger(quantity) || quantity < 1) errors.quantity = "Quantity: enter a whole number of shares, at least 1.";
  if (!ORDER_TYPES.includes(values.type)) errors.type = "Type: choose market, limit, stop or stop limit.";
  const shown = visibleFields(values.type);
  if (shown.limit_price) {
    const error = checkPrice(values.limit_price, "Limit price");
    if (error) errors.limit_price = error;
  }
  if (shown.stop_price) {
    const error = checkPrice(values.stop_price, "Stop price");
    if (error) errors.stop_price = error;
  }
  if (shown.time_in_force && !timesInForce(values.type).includes(values.time_in_force)) {
    errors.time_in_force =
      values.type === "limit"
        ? "Time in force: day, GTC, IOC or FOK."
        : "Time in force: day or GTC (IOC and FOK are for limit orders; a stop waits for its price).";
  }
  return errors;
}

// The POST /api/v1/orders body: a market order sends only what market orders always took.
export function orderBody(values, clientOrderId) {
  const body = { symbol: values.symbol, side: values.side, quantity: Number(values.quantity), client_order_id: clientOrderId };
  if (values.type === "market") return body;
  const shown = visibleFields(values.type);
  body.type = values.type;
  if (shown.limit_price) body.limit_price = String(values.limit_price).trim();
  if (shown.stop_price) body.stop_price = String(values.stop_price).trim();
  body.time_in_force = values.time_in_force;
  return body;
}

// The API's refusal as { field: message }: its own errors name `field`; validation errors list `loc`s.
// What names no ticket field comes back under "form".
export function fieldErrors(body, fallback) {
  const errors = {};
  const put = (field, message) => {
    const key = TICKET_FIELDS.includes(field) || field === "type" ? field : "form";
    errors[key] = errors[key] ? `${errors[key]} ${message}` : message;
  };
  if (body && Array.isArray(body.detail)) {
    for (const item of body.detail) {
      const loc = (item.loc ?? []).filter((part) => part !== "body" && part !== "payload");
      put(String(loc[loc.length - 1] ?? "form"), `${loc.join(".") || "order"}: ${item.msg}`);
    }
  } else if (body && typeof body.field === "string") {
    put(body.field, body.detail ?? body.message ?? fallback);
  } else {
    put("form", fallback);
  }
  return errors;
}
