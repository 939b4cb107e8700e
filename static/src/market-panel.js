// The market table panel: sector, search and watch-only filters, sorting, the watchlist star.

import { debounce } from "./batching.js";
import { MarketTable } from "./table.js";

export const WATCHLIST_KEY = "watchlist";

export function readWatchlist() {
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

// `resubscribe()` asks the feed for the symbols in view; returns the table, the re-layout and what is in view.
export function startMarketPanel({ $, boot, naive, quotes, trends, store }, { resubscribe }) {
  const sectorSelect = $("sector");
  for (const sector of boot.sectors) sectorSelect.add(new Option(sector.label, sector.value));
  const view = { sort: { key: "symbol", direction: 1 }, visible: [] };

  const table = new MarketTable({
    viewport: $("market-rows"),
    quotes,
    trends,
    naive,
    isWatched: (symbol) => store.get("watchlist").includes(symbol),
    onOpen: (symbol) => store.set("selected", symbol),
    onToggleWatch: (symbol) => toggleWatch(symbol, { store, table, resubscribe }),
    onRangeChange: (symbols) => {
      view.visible = symbols;
      resubscribe();
    },
  });
  const layOut = () => layOutRows({ $, quotes, store, table }, view);
  listenToFilters($, view, layOut);
  return { table, layOut, visibleSymbols: () => view.visible };
}

// The rows the filters let through, in the chosen order; the headers say which order that is.
function layOutRows({ $, quotes, store, table }, { sort }) {
  const search = $("search").value.trim().toLowerCase();
  const sector = $("sector").value;
  const only = $("watch-only").checked ? new Set(store.get("watchlist")) : null;
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

function listenToFilters($, view, layOut) {
  document.querySelector(".mt-head").addEventListener("click", (event) => {
    const key = event.target.closest("[data-sort]")?.dataset.sort;
    if (!key) return;
    // Prices move the order all the time; the table keeps its order until the trader sorts again.
    const { sort } = view;
    view.sort = { key, direction: sort.key === key ? -sort.direction : key === "symbol" || key === "name" ? 1 : -1 };
    layOut();
  });
  $("search").addEventListener("input", debounce(layOut, 120));
  $("sector").addEventListener("change", layOut);
  $("watch-only").addEventListener("change", layOut);
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !event.target.closest("input, select, textarea")) {
      event.preventDefault();
      $("search").focus();
    }
  });
}

function toggleWatch(symbol, { store, table, resubscribe }) {
  const list = store.get("watchlist");
  const next = list.includes(symbol) ? list.filter((s) => s !== symbol) : [...list, symbol];
  localStorage.setItem(WATCHLIST_KEY, JSON.stringify(next));
  store.set("watchlist", next);
  table.refreshWatch(symbol);
  resubscribe();
}
