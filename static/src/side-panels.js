// The side panels (portfolio, trades, watchlist, leaderboard, analytics): each re-renders only when its slice changes.

import { holdingSymbols } from "./feed-panel.js";
import { renderAnalytics, renderLeaderboard, renderOrders, renderPortfolio, renderWatchlist } from "./panels.js";

export function startSidePanels({ $, quotes, store }, { resubscribe }) {
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

  // A batch of quote changes: the holdings' and the watchlist's prices follow it.
  function onChanges(changes) {
    if (holdingSymbols(store).some((s) => changes.has(s))) renderPortfolio($("portfolio"), store.get("portfolio"), quotes);
    if (store.get("watchlist").some((s) => changes.has(s))) renderWatchlist($("watchlist"), store.get("watchlist"), quotes);
  }

  return { onChanges };
}
