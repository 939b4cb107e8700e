// The live feed: one WebSocket, subscriptions for what the trader sees, updates batched into the quotes.

import { APPLY_INTERVAL_MS, createBatcher, debounce } from "./batching.js";
import { listOf } from "./panels.js";
import { applyQuoteUpdates } from "./store.js";
import { MarketSocket } from "./ws.js";

const TREND_POINTS = 30;
const NOTICES = {
  updates_conflated: "Your connection is behind the live feed: updates are being conflated, each symbol shows its latest price.",
};

export const holdingSymbols = (store) => listOf(store.get("portfolio")?.holdings).map((h) => h.symbol);

// `visibleSymbols()` names the rows in view; `onChanges(changes)` shows each applied batch of quote changes.
// `onAccount(frame)` gets the trader's own events, `onStatus(status)` the connection's state.
export function startFeed(
  { $, boot, naive, stats, quotes, trends, store, say },
  { visibleSymbols, onChanges, onAccount, onStatus },
) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new MarketSocket({
    url: `${scheme}//${location.host}${boot.websocket_path}`,
    maxSymbols: boot.max_subscriptions,
    onUpdates: receive,
    onStatus: (status) => {
      showStatus(status);
      onStatus?.(status);
    },
    onAccount,
    onError: (message) => console.warn("feed:", message.code, message.message),
    onNotice: showNotice,
  });
  // Open symbol, holdings and watchlist first: they must stay live whatever is scrolled into view.
  const resubscribe = debounce(() => {
    const wanted = new Set(
      [store.get("selected"), ...holdingSymbols(store), ...store.get("watchlist"), ...visibleSymbols()].filter(Boolean),
    );
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
    onChanges(changes);
  }

  // The server says so once per episode (Error Handling: "Message Queue Overflow: ... client notification").
  function showNotice(notice) {
    stats.notices += 1;
    const text = NOTICES[notice.code] ?? (typeof notice.message === "string" ? notice.message : notice.code);
    say(text, "muted");
  }

  function showStatus(status) {
    const badge = $("connection");
    badge.dataset.state = status;
    badge.textContent = status === "live" ? "● Live" : status === "reconnecting" ? "Reconnecting…" : "Connecting…";
    $("reconnecting").hidden = status !== "reconnecting";
  }

  return { socket, resubscribe };
}
