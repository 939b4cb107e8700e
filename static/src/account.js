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

// The state slices an event changes: { orders, openOrders, portfolio } (only those that changed), given
// the current ones and the ids whose invoices are known to be ready.
export function applyAccountEvent(state, event, readyInvoices) {
  const order = eventOrder(event);
  const next = {};
  if (order) {
    const openOrders = reviseOpenOrders(state.openOrders ?? [], event.event, order);
    if (openOrders !== state.openOrders) next.openOrders = openOrders;
    const orders = reviseTrades(state.orders ?? [], event.event, order, readyInvoices);
    if (orders !== state.orders) next.orders = orders;
  }
  const portfolio = reviseCash(state.portfolio, event);
  if (portfolio !== state.portfolio) next.portfolio = portfolio;
  return next;
}

function reviseOpenOrders(openOrders, kind, order) {
  const without = openOrders.filter((o) => o.id !== order.id);
  if (kind === "order_accepted" && isOpenOrder(order)) return [{ ...order, status: order.status ?? "open" }, ...without];
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
