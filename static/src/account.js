// The trader's own events on the feed socket (`account_ready`, `account`, `account_gap` frames): kept in
// sequence across reconnects, and what each event changes in the page's state. Pure: no DOM, no network.

export const TERMINAL_STATUSES = new Set(["filled", "cancelled", "canceled", "expired", "rejected"]);

// Per-trader sequence numbers: every event exactly once, in order, even across reconnects.
// `receive(frame)` answers { deliver: event | null, send: message | null, refresh: boolean }:
// deliver the event to the page, send the message on the socket, refetch the account (events were lost).
export class AccountSequence {
  constructor(last = null) {
    this.last = last; // the last event applied (null: none yet; the first account_ready sets it)
    this.resuming = false; // an account_resume is on its way: out-of-order events are covered by its answer
  }

  receive(frame) {
    if (frame?.type === "account_ready") return this.ready(frame.seq);
    if (frame?.type === "account") return this.event(frame);
    if (frame?.type === "account_gap") return this.gap(frame.after, frame.next);
    return answer();
  }

  ready(seq) {
    this.resuming = false;
    if (!Number.isInteger(seq)) return answer();
    if (this.last === null) this.last = seq;
    if (seq === this.last) return answer();
    return this.resume();
  }

  event(frame) {
    if (!Number.isInteger(frame.seq)) return answer();
    if (this.last === null || frame.seq === this.last + 1) {
      this.last = frame.seq;
      this.resuming = false;
      return answer({ deliver: frame });
    }
    if (frame.seq <= this.last || this.resuming) return answer(); // a duplicate, or covered by the resume
    return this.resume();
  }

  // Events after `after` up to next - 1 are gone. A gap behind what the page already has is stale (the answer
  // to an older resume) unless it answers the page's own position (the server's numbers started again).
  gap(after, next) {
    if (!Number.isInteger(next)) return answer();
    if (next - 1 < this.last && after !== this.last) return answer();
    this.last = next - 1;
    this.resuming = false;
    return answer({ refresh: true });
  }

  // The socket closed: whatever was asked is lost with it; the next connection's account_ready starts again.
  disconnected() {
    this.resuming = false;
  }

  resume() {
    this.resuming = true;
    return answer({ send: { type: "account_resume", after: this.last } });
  }
}

function answer({ deliver = null, send = null, refresh = false } = {}) {
  return { deliver, send, refresh };
}

// An event's order: the payload itself (flat) or its `order` object.
export function eventOrder(event) {
  const order = event.order && typeof event.order === "object" ? event.order : event;
  return order.id === undefined || order.id === null ? null : order;
}

export const isOpenOrder = (order) => order.type !== "market" && !TERMINAL_STATUSES.has(order.status);

// What the page knows about its open orders beyond the list itself, so that a fetched list cannot undo an
// event or a cancel: an answer to GET /orders?status=open may have been read by the server before an order
// settled (or opened) and arrive after the page heard of it. Ids of settled orders are kept (a bounded,
// oldest-first record: an answer older than the last `limit` settlements is long gone); ids an event opened
// are kept with the tick of the clock they opened at, until an answer requested after them was applied.
export class OpenOrdersLedger {
  constructor(limit = 1000) {
    this.limit = limit;
    this.clock = 0; // ticks at every request and every opening event
    this.settled = new Set();
    this.opened = new Map(); // id -> the tick its order_accepted was applied at
    this.applied = 0; // the tick of the newest answer applied
  }

  // A request for the open orders is about to be sent: its token for `reconcile`.
  requested() {
    this.clock += 1;
    return this.clock;
  }

  isSettled(id) {
    return this.settled.has(id);
  }

  // The order is filled, cancelled or expired (a terminal event, or a DELETE that succeeded).
  settle(id) {
    this.opened.delete(id);
    this.settled.delete(id);
    this.settled.add(id);
    if (this.settled.size > this.limit) this.settled.delete(this.settled.values().next().value);
  }

  // An account event is being applied.
  observe(event) {
    const order = eventOrder(event);
    if (!order) return;
    if (event.event === "order_accepted" && isOpenOrder(order) && !this.settled.has(order.id)) {
      this.clock += 1;
      this.opened.set(order.id, this.clock);
      if (this.opened.size > this.limit) this.opened.delete(this.opened.keys().next().value);
    } else if (TERMINAL_EVENTS.has(event.event) || TERMINAL_STATUSES.has(order.status)) {
      this.settle(order.id);
    }
  }

  // The open orders to show when the answer to request `token` arrives with `fetched` (a page of orders) and
  // the page shows `current`: the fetched open orders not settled since, plus those an event opened after
  // the request was sent, each once. Null when a later request's answer was already applied (keep `current`).
  reconcile(fetched, current, token) {
    if (token < this.applied) return null;
    this.applied = token;
    const shown = fetched.filter((o) => isOpenOrder(o) && !this.settled.has(o.id));
    const ids = new Set(shown.map((o) => o.id));
    const since = (current ?? []).filter((o) => (this.opened.get(o.id) ?? 0) > token && !this.settled.has(o.id) && !ids.has(o.id));
    for (const [id, tick] of this.opened) if (tick <= token) this.opened.delete(id); // the answer covers them
    return [...since, ...shown];
  }
}

const TERMINAL_EVENTS = new Set(["order_filled", "order_cancelled", "order_expired"]);

// The state slices an event changes: { orders, openOrders, portfolio } (only those that changed), given
// the current ones and the ids whose invoices are known to be ready. With a ledger, the event is noted in
// it first, and an acceptance that arrives after the order settled (a cancel answered first) opens nothing.
// Which fetched answers may still be applied. An answer requested before an event changed its slice (the
// trades, the portfolio) may have been read by the server before that event's commit and would undo it:
// `loadFresh` asks again instead.
export class SliceVersions {
  constructor() {
    this.versions = new Map();
  }

  stamp(slice) {
    return this.versions.get(slice) ?? 0;
  }

  changed(slice) {
    this.versions.set(slice, this.stamp(slice) + 1);
  }
}

// `fetch()` the slice and hand the answer to `use`, unless an event changed the slice while it was on its
// way: then fetch again, at most `tries` times in all (after that the page keeps what the events made it).
export async function loadFresh(versions, slice, fetch, use, tries = 3) {
  for (let attempt = 0; attempt < tries; attempt += 1) {
    const stamp = versions.stamp(slice);
    const value = await fetch();
    if (versions.stamp(slice) === stamp) return use(value);
  }
  return undefined;
}

export function applyAccountEvent(state, event, readyInvoices, ledger = null) {
  const order = eventOrder(event);
  const next = {};
  ledger?.observe(event);
  if (order) {
    const openOrders = reviseOpenOrders(state.openOrders ?? [], event.event, order, ledger?.isSettled(order.id));
    if (openOrders !== state.openOrders) next.openOrders = openOrders;
    const orders = reviseTrades(state.orders ?? [], event.event, order, readyInvoices);
    if (orders !== state.orders) next.orders = orders;
  }
  const portfolio = reviseCash(state.portfolio, event);
  if (portfolio !== state.portfolio) next.portfolio = portfolio;
  return next;
}

function reviseOpenOrders(openOrders, kind, order, settled = false) {
  const without = openOrders.filter((o) => o.id !== order.id);
  if (kind === "order_accepted" && isOpenOrder(order) && !settled) return [{ ...order, status: order.status ?? "open" }, ...without];
  if (kind === "order_accepted" || without.length === openOrders.length) return openOrders;
  return without; // filled, cancelled or expired: no longer open
}

function reviseTrades(orders, kind, order, readyInvoices) {
  if (kind === "invoice_ready") {
    readyInvoices.add(order.id);
    if (!orders.some((o) => o.id === order.id)) return orders;
    return orders.map((o) => (o.id === order.id ? { ...o, invoice_status: "ready" } : o));
  }
  if (kind !== "order_filled" || orders.some((o) => o.id === order.id)) return orders;
  const invoice_status = readyInvoices.has(order.id) ? "ready" : "pending";
  return [{ ...order, status: "filled", invoice_status }, ...orders];
}

function reviseCash(portfolio, event) {
  if (!portfolio) return portfolio;
  const changes = {};
  for (const field of ["cash", "buying_power", "reserved_cash"]) {
    if (event[field] !== undefined && event[field] !== null && event[field] !== portfolio[field]) changes[field] = event[field];
  }
  return Object.keys(changes).length ? { ...portfolio, ...changes } : portfolio;
}

// Orders fetched from the API: those whose invoice an event already announced stay ready.
export function withReadyInvoices(orders, readyInvoices) {
  if (!Array.isArray(orders)) return orders;
  return orders.map((o) => (readyInvoices.has(o.id) && o.invoice_status !== "ready" ? { ...o, invoice_status: "ready" } : o));
}

// What the fill of an order says to the trader.
export function describeFill(order) {
  const verb = order.side === "sell" ? "Sold" : "Bought";
  return `Filled: ${verb} ${order.quantity} ${order.symbol}${order.price ? ` at ${order.price}` : ""}.`;
}
