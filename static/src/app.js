// Entry point of the dashboard bundle (esbuild -> static/dist/app.js).
// Load: the first screen's data is embedded in the page (no API call), then one WebSocket.

import { createApi } from "./api.js";
import { APPLY_INTERVAL_MS, createBatcher, debounce } from "./batching.js";
import { SymbolChart } from "./chart.js";
import { formatMoney, formatPercent, formatPrice, formatSigned, signClass } from "./format.js";
import { listOf, renderAnalytics, renderLeaderboard, renderOrders, renderPortfolio, renderWatchlist } from "./panels.js";
import { applyQuoteUpdates, createStore } from "./store.js";
import { MarketTable } from "./table.js";
import { MarketSocket } from "./ws.js";

const TREND_POINTS = 30;
const WATCHLIST_KEY = "watchlist";

export function toggleTheme() {
  const next = document.documentElement.dataset.theme === "light" ? "dark" : "light";
  document.documentElement.dataset.theme = next;
  localStorage.setItem("theme", next);
  return next;
}

function readWatchlist() {
  try {
    const saved = JSON.parse(localStorage.getItem(WATCHLIST_KEY) ?? "[]");
    return Array.isArray(saved) ? saved.filter((s) => typeof s === "string") : [];
  } catch {
    return [];
  }
}

function compareBy(key, direction) {
  return (a, b) => {
    const x = a[key];
    const y = b[key];
    const order = typeof x === "string" ? x.localeCompare(y) : x - y;
    return order * direction || a.symbol.localeCompare(b.symbol);
  };
}

function startDashboard(root) {
  const $ = (id) => document.getElementById(id);
  const boot = JSON.parse($("bootstrap").textContent);
  const naive = root.dataset.render === "naive";
  // Counters for the browser tests and the CPU benchmark.
  const stats = { mode: naive ? "naive" : "optimised", frames: 0, updates: 0, applies: 0, applyTimes: [], subscribed: [] };
  window.__stats = stats;

  const quotes = new Map(boot.symbols.map((row) => [row.symbol, { ...row }]));
  const trends = new Map(boot.symbols.map((row) => [row.symbol, [row.previous_close, row.price].map(Number)]));
  const store = createStore({
    portfolio: boot.portfolio,
    orders: boot.orders,
    leaderboard: boot.leaderboard,
    analytics: boot.analytics,
    watchlist: readWatchlist(),
    selected: null,
  });

  const messages = $("messages");
  function say(text, kind = "error") {
    const item = document.createElement("p");
    item.className = kind;
    item.textContent = text;
    messages.append(item);
    setTimeout(() => item.remove(), 8000);
  }
  const api = createApi({ csrfToken: $("csrf-token").value, onRetry: (attempt) => attempt === 0 && say("The server is slow to answer; retrying…", "muted") });
  const chart = new SymbolChart({ container: $("chart"), api, onError: say });

  // --- market table, filters, sorting -----------------------------------------------------------
  const sectorSelect = $("sector");
  for (const sector of boot.sectors) sectorSelect.add(new Option(sector.label, sector.value));
  let sort = { key: "symbol", direction: 1 };
  let visible = [];

  const watched = () => new Set(store.get("watchlist"));
  const table = new MarketTable({
    viewport: $("market-rows"),
    quotes,
    trends,
    naive,
    isWatched: (symbol) => store.get("watchlist").includes(symbol),
    onOpen: (symbol) => store.set("selected", symbol),
    onToggleWatch: toggleWatch,
    onRangeChange: (symbols) => {
      visible = symbols;
      resubscribe();
    },
  });

  function layOut() {
    const search = $("search").value.trim().toLowerCase();
    const sector = sectorSelect.value;
    const only = $("watch-only").checked ? watched() : null;
    const rows = [...quotes.values()].filter(
      (q) =>
        (!sector || q.sector === sector) &&
        (!only || only.has(q.symbol)) &&
        (!search || q.symbol.toLowerCase().includes(search) || q.name.toLowerCase().includes(search)),
    );
    rows.sort(compareBy(sort.key, sort.direction));
    $("market-count").textContent = `(${rows.length})`;
    table.setRows(rows.map((q) => q.symbol));
    for (const button of document.querySelectorAll(".mt-head [data-sort]")) {
      const active = button.dataset.sort === sort.key;
      button.setAttribute("aria-sort", active ? (sort.direction > 0 ? "ascending" : "descending") : "none");
    }
  }

  document.querySelector(".mt-head").addEventListener("click", (event) => {
    const key = event.target.closest("[data-sort]")?.dataset.sort;
    if (!key) return;
    // Prices move the order all the time; the table keeps its order until the trader sorts again.
    sort = { key, direction: sort.key === key ? -sort.direction : key === "symbol" || key === "name" ? 1 : -1 };
    layOut();
  });
  $("search").addEventListener("input", debounce(layOut, 120));
  sectorSelect.addEventListener("change", layOut);
  $("watch-only").addEventListener("change", layOut);
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !event.target.closest("input, select, textarea")) {
      event.preventDefault();
      $("search").focus();
    }
  });

  function toggleWatch(symbol) {
    const list = store.get("watchlist");
    const next = list.includes(symbol) ? list.filter((s) => s !== symbol) : [...list, symbol];
    localStorage.setItem(WATCHLIST_KEY, JSON.stringify(next));
    store.set("watchlist", next);
    table.refreshWatch(symbol);
    resubscribe();
  }

  // --- live feed ------------------------------------------------------------------------------------
  const holdingSymbols = () => listOf(store.get("portfolio")?.holdings).map((h) => h.symbol);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new MarketSocket({
    url: `${scheme}//${location.host}${boot.websocket_path}`,
    maxSymbols: boot.max_subscriptions,
    onUpdates: receive,
    onStatus: showStatus,
    onError: (message) => console.warn("feed:", message.code, message.message),
  });
  // Open symbol, holdings and watchlist first: they must stay live whatever is scrolled into view.
  const resubscribe = debounce(() => {
    const wanted = new Set([store.get("selected"), ...holdingSymbols(), ...store.get("watchlist"), ...visible].filter(Boolean));
    socket.want(wanted);
    stats.subscribed = [...socket.wanted];
  }, 150);

  const batcher = createBatcher({ apply, intervalMs: APPLY_INTERVAL_MS });
  function receive(updates) {
    stats.frames += 1;
    stats.updates += updates.length;
    if (naive) apply(updates); // the baseline: every message re-renders at once
    else batcher.push(updates);
  }

  function apply(updates) {
    stats.applies += 1;
    stats.applyTimes.push(performance.now());
    if (stats.applyTimes.length > 500) stats.applyTimes.splice(0, 250);
    const changes = applyQuoteUpdates(quotes, updates);
    for (const [symbol, change] of changes) {
      if (!change.fields.includes("price")) continue;
      const trend = trends.get(symbol);
      trend.push(quotes.get(symbol).price);
      if (trend.length > TREND_POINTS) trend.shift();
    }
    table.applyChanges(changes);
    const selected = store.get("selected");
    if (changes.has(selected)) {
      chart.push(quotes.get(selected));
      showQuote(selected);
    }
    if (holdingSymbols().some((s) => changes.has(s))) renderPortfolio($("portfolio"), store.get("portfolio"), quotes);
    if (store.get("watchlist").some((s) => changes.has(s))) renderWatchlist($("watchlist"), store.get("watchlist"), quotes);
  }

  function showStatus(status) {
    const badge = $("connection");
    badge.dataset.state = status;
    badge.textContent = status === "live" ? "● Live" : status === "reconnecting" ? "Reconnecting…" : "Connecting…";
    $("reconnecting").hidden = status !== "reconnecting";
  }

  // --- symbol view and order ticket ---------------------------------------------------------------
  function showQuote(symbol) {
    const q = quotes.get(symbol);
    $("symbol-quote").innerHTML = q
      ? `<strong>${formatPrice(q.price)}</strong> <span class="${signClass(q.change)}">${formatSigned(q.change)} (${formatPercent(q.change_percent)})</span>`
      : "";
    updatePreview();
  }

  store.subscribe("selected", (symbol) => {
    const q = quotes.get(symbol);
    $("symbol-title").textContent = q ? `${symbol} · ${q.name}` : symbol;
    $("place-order").disabled = !q || q.active === false;
    $("ticket-message").textContent = q?.active === false ? `${symbol} is halted and cannot be traded.` : "";
    showQuote(symbol);
    chart.open(symbol);
    resubscribe();
  });

  $("chart-older").addEventListener("click", () => chart.loadOlder());

  const ticket = $("ticket");
  function updatePreview() {
    const q = quotes.get(store.get("selected"));
    const quantity = Number($("quantity").value);
    const side = ticket.elements.side.value;
    $("preview-side").textContent = side === "buy" ? "cost" : "proceeds";
    $("preview").textContent = q && Number.isInteger(quantity) && quantity > 0 ? formatMoney(q.price * quantity) : "—";
  }
  ticket.addEventListener("input", updatePreview);
  ticket.addEventListener("submit", async (event) => {
    event.preventDefault();
    const symbol = store.get("selected");
    const quantity = Number($("quantity").value);
    const message = $("ticket-message");
    message.className = "ticket-message";
    if (!symbol) return;
    if (!Number.isInteger(quantity) || quantity < 1) {
      message.textContent = "Quantity: enter a whole number of shares, at least 1.";
      message.classList.add("error");
      return;
    }
    const button = $("place-order");
    button.disabled = true;
    message.textContent = "Placing order…";
    try {
      const order = { symbol, side: ticket.elements.side.value, quantity, client_order_id: crypto.randomUUID() };
      const result = await api.post("/api/v1/orders", order);
      const price = result?.price ?? result?.trade?.price;
      message.textContent = `${order.side === "buy" ? "Bought" : "Sold"} ${quantity} ${symbol}${price ? ` at ${formatPrice(price)}` : ""}.`;
      message.classList.add("ok");
      refreshAccount().catch((error) => say(`Could not refresh the portfolio: ${error.message}`));
    } catch (error) {
      message.textContent = error.message;
      message.classList.add("error");
    } finally {
      button.disabled = false;
    }
  });

  // After an order: the new cash and holdings, then the trades until their invoices are generated.
  async function refreshAccount() {
    const [portfolio, orders] = await Promise.all([api.get("/api/v1/portfolio"), api.get("/api/v1/dashboard/orders")]);
    store.set("portfolio", portfolio);
    store.set("orders", orders);
    for (let poll = 0; poll < 10 && store.get("orders").some((o) => o.invoice_status === "pending"); poll++) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      store.set("orders", await api.get("/api/v1/dashboard/orders"));
    }
  }

  // --- panels: each re-renders only when its slice changes -----------------------------------------
  store.subscribe("portfolio", (portfolio) => {
    renderPortfolio($("portfolio"), portfolio, quotes);
    resubscribe();
  });
  store.subscribe("orders", (orders) => renderOrders($("orders"), orders));
  store.subscribe("watchlist", (list) => renderWatchlist($("watchlist"), list, quotes));
  renderPortfolio($("portfolio"), store.get("portfolio"), quotes);
  renderOrders($("orders"), store.get("orders"));
  renderWatchlist($("watchlist"), store.get("watchlist"), quotes);
  renderLeaderboard($("leaderboard"), store.get("leaderboard"));
  renderAnalytics($("analytics"), store.get("analytics"));
  for (const id of ["portfolio", "watchlist"]) {
    $(id).addEventListener("click", (event) => {
      const symbol = event.target.closest("[data-open]")?.dataset.open;
      if (symbol) store.set("selected", symbol);
    });
  }

  document.querySelector("[data-action=toggle-theme]")?.addEventListener("click", () => {
    toggleTheme();
    chart.applyTheme();
  });

  layOut();
  socket.connect();
  const first = store.get("watchlist")[0] ?? boot.symbols[0]?.symbol;
  if (first) store.set("selected", first);
}

const root = document.querySelector(".dashboard");
if (root) startDashboard(root);
else document.querySelector("[data-action=toggle-theme]")?.addEventListener("click", toggleTheme);
