// The trader's live account: events from the feed socket (fills, cancels, expiries, ready invoices) applied
// to the page's state in sequence, and the open-orders panel with its cancel buttons.

import {
  AccountSequence,
  applyAccountEvent,
  describeFill,
  eventOrder,
  loadFresh,
  OpenOrdersLedger,
  SliceVersions,
  withReadyInvoices,
} from "./account.js";
import { debounce } from "./batching.js";
import { escapeHtml, formatPrice, formatShortTime } from "./format.js";
import { listOf } from "./panels.js";

const OPEN_ORDERS_PATH = "/api/v1/orders?status=open&limit=100";
const PORTFOLIO_PATH = "/api/v1/portfolio";
const TRADES_PATH = "/api/v1/dashboard/orders";
const TYPE_LABELS = { market: "Market", limit: "Limit", stop: "Stop", stop_limit: "Stop limit" };

export function renderOpenOrders(element, orders) {
  const items = listOf(orders);
  if (items.length === 0) {
    element.innerHTML = `<p class="muted">No open orders.</p>`;
    return;
  }
  const price = (value) => (value !== undefined && value !== null && value !== "" ? formatPrice(value) : "—");
  element.innerHTML =
    `<p><button type="button" class="ghost small" data-cancel-all>Cancel all</button></p>` +
    `<table class="small"><thead><tr><th>Time</th><th>Side</th><th>Symbol</th><th>Type</th><th class="num">Qty</th>` +
    `<th class="num">Limit</th><th class="num">Stop</th><th>TIF</th><th></th></tr></thead><tbody>` +
    items
      .map(
        (o) =>
          `<tr data-order="${escapeHtml(o.id)}"><td>${escapeHtml(formatShortTime(o.created_at))}</td>` +
          `<td class="${o.side === "buy" ? "up" : "down"}">${escapeHtml(o.side ?? "")}</td><td>${escapeHtml(o.symbol ?? "")}</td>` +
          `<td>${escapeHtml(TYPE_LABELS[o.type] ?? o.type ?? "")}</td><td class="num">${escapeHtml(o.quantity ?? "")}</td>` +
          `<td class="num">${price(o.limit_price)}</td><td class="num">${price(o.stop_price)}</td>` +
          `<td>${escapeHtml((o.time_in_force ?? "").toUpperCase())}</td>` +
          `<td><button type="button" class="ghost small" data-cancel="${escapeHtml(o.id)}">Cancel</button></td></tr>`,
      )
      .join("") +
    `</tbody></table>`;
}

// `page.stats.account` records what arrived (the browser tests read it).
export function startAccountPanel({ $, boot, store, say, api, stats }) {
  // The page's embedded data includes the events up to boot.account_seq: resume after it.
  const sequence = new AccountSequence(Number.isInteger(boot.account_seq) ? boot.account_seq : null);
  const readyInvoices = new Set();
  const account = { seq: null, events: [], refreshes: 0 };
  // Settled and newly opened orders, so that an open-orders answer read before an event or a cancel cannot undo it.
  const ledger = new OpenOrdersLedger();
  const loadOpenOrders = startOpenOrders({ $, store, say, api, ledger });
  // Slices an event changed, so that a portfolio or trades answer read before the event cannot undo it.
  const versions = new SliceVersions();
  stats.account = account;
  let socketSend = () => {};

  const setOrders = (orders) => store.set("orders", withReadyInvoices(orders, readyInvoices));
  const load = (slice, path, use = (value) => store.set(slice, value)) =>
    loadFresh(versions, slice, () => api.get(path), use);

  const refreshPortfolio = debounce(() => {
    load("portfolio", PORTFOLIO_PATH).catch((error) => say(`Could not refresh the portfolio: ${error.message}`));
  }, 100);

  // The cash, holdings and trades from the API (after an order, or when events were lost), and the open
  // orders too when they may have changed.
  async function refresh({ openOrders = true } = {}) {
    await Promise.all([load("portfolio", PORTFOLIO_PATH), load("orders", TRADES_PATH, setOrders)]);
    if (openOrders) await loadOpenOrders();
  }

  // Events were lost (the history moved on): everything the events would have changed, from the API.
  function refreshAll() {
    account.refreshes += 1;
    return refresh();
  }

  function apply(event) {
    account.events.push({ seq: event.seq, event: event.event, id: eventOrder(event)?.id ?? null });
    if (account.events.length > 200) account.events.splice(0, 100);
    const state = { orders: store.get("orders"), openOrders: store.get("openOrders"), portfolio: store.get("portfolio") };
    for (const [slice, value] of Object.entries(applyAccountEvent(state, event, readyInvoices, ledger))) {
      versions.changed(slice);
      store.set(slice, value);
    }
    if (event.event === "order_filled") {
      const order = eventOrder(event);
      if (order?.type && order.type !== "market") say(describeFill(order), "ok");
      refreshPortfolio(); // the holdings changed too
    }
  }

  // A frame of the feed socket whose type starts with "account".
  function onFrame(frame) {
    const { deliver, send, refresh } = sequence.receive(frame);
    account.seq = sequence.last;
    if (send) socketSend(send);
    if (deliver) apply(deliver);
    if (refresh) refreshAll().catch((error) => say(`Could not refresh the account: ${error.message}`));
  }

  startPositionClose({ $, say, api }, refresh);
  function onStatus(status) {
    if (status !== "live") sequence.disconnected();
  }

  return {
    onFrame,
    onStatus,
    refresh,
    useSocket: (send) => {
      socketSend = send;
    },
  };
}

// A holding's Close button: a market sell of all of it, its open orders cancelled first (one engine commit).
function startPositionClose({ $, say, api }, refresh) {
  $("portfolio").addEventListener("click", async (event) => {
    const button = event.target.closest("[data-close]");
    if (!button) return;
    const symbol = button.dataset.close;
    button.disabled = true;
    try {
      const sold = await api.del(`/api/v1/positions/${encodeURIComponent(symbol)}?cancel_orders=true`);
      say(`Sold ${sold.quantity} ${symbol}${sold.price ? ` at ${formatPrice(sold.price)}` : ""}.`, "ok");
      await refresh();
    } catch (error) {
      say(`Could not close ${symbol}: ${error.message}`);
      button.disabled = false;
    }
  });
}

// The open-orders panel: loaded once at start (and after a refresh), cancel buttons; events keep it current.
function startOpenOrders({ $, store, say, api, ledger }) {
  async function loadOpenOrders() {
    const token = ledger.requested();
    const page = await api.get(OPEN_ORDERS_PATH);
    const openOrders = ledger.reconcile(listOf(page), store.get("openOrders"), token);
    if (openOrders) store.set("openOrders", openOrders);
  }

  store.subscribe("openOrders", (orders) => renderOpenOrders($("open-orders"), orders));
  renderOpenOrders($("open-orders"), store.get("openOrders"));
  $("open-orders").addEventListener("click", (event) => {
    const button = event.target.closest("[data-cancel]");
    if (button) cancel(button);
    const all = event.target.closest("[data-cancel-all]");
    if (all) cancelAll(all);
  });

  async function cancelAll(button) {
    button.disabled = true;
    try {
      const { cancelled } = await api.del("/api/v1/orders");
      const ids = new Set(cancelled.map((o) => o.id));
      for (const id of ids) ledger.settle(id);
      store.set("openOrders", (store.get("openOrders") ?? []).filter((o) => !ids.has(o.id)));
      say(`Cancelled ${ids.size} open order${ids.size === 1 ? "" : "s"}.`, "ok");
    } catch (error) {
      say(`Could not cancel: ${error.message}`);
      button.disabled = false;
      loadOpenOrders().catch(() => {});
    }
  }

  async function cancel(button) {
    const id = button.dataset.cancel;
    button.disabled = true;
    try {
      await api.del(`/api/v1/orders/${encodeURIComponent(id)}`);
      ledger.settle(id);
      store.set("openOrders", (store.get("openOrders") ?? []).filter((o) => o.id !== id));
    } catch (error) {
      say(error.status === 409 ? `Not cancelled: ${error.message}` : `Could not cancel: ${error.message}`);
      button.disabled = false;
      loadOpenOrders().catch(() => {});
    }
  }

  loadOpenOrders().catch((error) => say(`Could not load the open orders: ${error.message}`));
  return loadOpenOrders;
}
