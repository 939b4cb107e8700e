// Entry point of the dashboard bundle (esbuild -> static/dist/app.js).
// Load: the first screen's data is embedded in the page (no API call), then one WebSocket.
// Each panel is a module (market-panel, feed-panel, ticket-panel, side-panels, account-panel); this file shares the
// page's state between them and wires their hooks together.

import { startAccountPanel } from "./account-panel.js";
import { createApi } from "./api.js";
import { SymbolChart } from "./chart.js";
import { startFeed } from "./feed-panel.js";
import { readWatchlist, startMarketPanel } from "./market-panel.js";
import { startSidePanels } from "./side-panels.js";
import { createStore } from "./store.js";
import { startTicketPanel } from "./ticket-panel.js";

export function toggleTheme() {
  const next = document.documentElement.dataset.theme === "light" ? "dark" : "light";
  document.documentElement.dataset.theme = next;
  localStorage.setItem("theme", next);
  return next;
}

// What every panel reads: the embedded first screen, the quotes and trends, the store, messages, API, chart.
function pageContext(root) {
  const $ = (id) => document.getElementById(id);
  const boot = JSON.parse($("bootstrap").textContent);
  const naive = root.dataset.render === "naive";
  // Counters for the browser tests and the CPU benchmark.
  const stats = { mode: naive ? "naive" : "optimised", frames: 0, updates: 0, applies: 0, notices: 0, applyTimes: [], subscribed: [] };
  window.__stats = stats;

  const quotes = new Map(boot.symbols.map((row) => [row.symbol, { ...row }]));
  const trends = new Map(boot.symbols.map((row) => [row.symbol, [row.previous_close, row.price].map(Number)]));
  const store = createStore({
    portfolio: boot.portfolio,
    orders: boot.orders,
    openOrders: [],
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
  return { $, boot, naive, stats, quotes, trends, store, say, api, chart };
}

function startDashboard(root) {
  const page = pageContext(root);
  // The feed starts after the table (it subscribes to the rows in view); hooks reach it once it exists.
  let feed = null;
  const resubscribe = () => feed.resubscribe();
  const market = startMarketPanel(page, { resubscribe });
  const account = startAccountPanel(page);
  const ticket = startTicketPanel(page, { resubscribe, account });
  const side = startSidePanels(page, { resubscribe });
  feed = startFeed(page, {
    visibleSymbols: market.visibleSymbols,
    onAccount: account.onFrame,
    onStatus: account.onStatus,
    onChanges: (changes) => {
      market.table.applyChanges(changes);
      ticket.onChanges(changes);
      side.onChanges(changes);
    },
  });

  account.useSocket((message) => feed.socket.send(message));

  document.querySelector("[data-action=toggle-theme]")?.addEventListener("click", () => {
    toggleTheme();
    page.chart.applyTheme();
  });

  market.layOut();
  feed.socket.connect();
  const first = page.store.get("watchlist")[0] ?? page.boot.symbols[0]?.symbol;
  if (first) page.store.set("selected", first);
}

const root = document.querySelector(".dashboard");
if (root) startDashboard(root);
else document.querySelector("[data-action=toggle-theme]")?.addEventListener("click", toggleTheme);
