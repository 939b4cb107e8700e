// The side panels: portfolio (valued live from the feed), orders with invoices, watchlist,
// leaderboard and analytics. Each renders only when its own slice of state changed (Property 17).

import { escapeHtml, formatMoney, formatPercent, formatPrice, formatShortTime, formatSigned, formatTime, signClass } from "./format.js";

export function listOf(value) {
  if (Array.isArray(value)) return value;
  return value?.items ?? value?.data ?? value?.entries ?? [];
}

const holdingAverage = (h) => Number(h.average_price ?? h.average_cost ?? h.avg_price ?? h.cost_basis_per_share ?? 0);

// Live valuation: cash plus each holding at the latest price the page has.
export function valuePortfolio(portfolio, quotes) {
  const holdings = listOf(portfolio?.holdings).map((h) => {
    const quantity = Number(h.quantity);
    const price = quotes.get(h.symbol)?.price ?? Number(h.price ?? h.last_price ?? holdingAverage(h));
    const average = holdingAverage(h);
    return { symbol: h.symbol, quantity, average, price, value: quantity * price, pnl: (price - average) * quantity };
  });
  const cash = Number(portfolio?.cash ?? 0);
  const invested = holdings.reduce((sum, h) => sum + h.value, 0);
  const total = cash + invested;
  const starting = Number(portfolio?.starting_cash ?? total);
  return { cash, invested, total, pnl: total - starting, holdings };
}

export function renderPortfolio(element, portfolio, quotes) {
  if (!portfolio) {
    element.innerHTML = `<p class="muted">Portfolio unavailable.</p>`;
    return;
  }
  const v = valuePortfolio(portfolio, quotes);
  const rows = v.holdings
    .map(
      (h) =>
        `<tr data-symbol="${escapeHtml(h.symbol)}"><th scope="row"><button type="button" class="link" data-open="${escapeHtml(h.symbol)}">${escapeHtml(h.symbol)}</button></th>` +
        `<td class="num">${h.quantity}</td><td class="num">${formatPrice(h.average)}</td><td class="num">${formatPrice(h.price)}</td>` +
        `<td class="num">${formatPrice(h.value)}</td><td class="num ${signClass(h.pnl)}">${formatSigned(h.pnl)}</td>` +
        `<td><button type="button" class="ghost small" data-close="${escapeHtml(h.symbol)}" title="Sell all at market (cancels its open orders)">Close</button></td></tr>`,
    )
    .join("");
  element.innerHTML =
    `<dl class="figures"><div><dt>Cash</dt><dd data-field="cash">${formatMoney(v.cash)}</dd></div>` +
    buyingPower(portfolio) +
    `<div><dt>Holdings</dt><dd>${formatMoney(v.invested)}</dd></div>` +
    `<div><dt>Total</dt><dd>${formatMoney(v.total)}</dd></div>` +
    `<div><dt>P&amp;L</dt><dd class="${signClass(v.pnl)}" data-field="pnl">${formatSigned(v.pnl)}</dd></div></dl>` +
    (rows
      ? `<table class="small" data-role="holdings"><thead><tr><th>Symbol</th><th class="num">Qty</th><th class="num">Avg</th><th class="num">Last</th><th class="num">Value</th><th class="num">P&amp;L</th><th></th></tr></thead><tbody>${rows}</tbody></table>`
      : `<p class="muted" data-role="holdings">No holdings yet: open a symbol and buy.</p>`);
}

// Cash less what resting orders reserve (shown once the API reports it).
function buyingPower(portfolio) {
  if (portfolio.buying_power === undefined || portfolio.buying_power === null) return "";
  const reserved = Number(portfolio.reserved_cash ?? 0);
  const title = reserved ? ` title="${escapeHtml(`${formatMoney(reserved)} reserved by open orders`)}"` : "";
  return `<div><dt>Buying power</dt><dd data-field="buying_power"${title}>${formatMoney(portfolio.buying_power)}</dd></div>`;
}

export function renderOrders(element, orders) {
  const items = listOf(orders);
  if (items.length === 0) {
    element.innerHTML = `<p class="muted">No trades yet.</p>`;
    return;
  }
  element.innerHTML =
    `<table class="small"><thead><tr><th>Time</th><th>Side</th><th>Symbol</th><th class="num">Qty</th><th class="num">Price</th><th>Invoice</th></tr></thead><tbody>` +
    items
      .map((o) => {
        const invoice = o.invoice_status ?? "—";
        const url = o.invoice_url ?? `/api/v1/trades/${encodeURIComponent(o.id)}/invoice`;
        const download = invoice === "ready" ? ` <a href="${escapeHtml(url)}" download>Download</a>` : "";
        return (
          `<tr><td>${escapeHtml(formatShortTime(o.created_at))}</td><td class="${o.side === "buy" ? "up" : "down"}">${escapeHtml(o.side ?? "")}</td>` +
          `<td>${escapeHtml(o.symbol ?? "")}</td><td class="num">${escapeHtml(o.quantity ?? "")}</td>` +
          `<td class="num">${o.price !== undefined && o.price !== null ? formatPrice(o.price) : "—"}</td>` +
          `<td class="nowrap"><span class="badge">${escapeHtml(invoice)}</span>${download}</td></tr>`
        );
      })
      .join("") +
    `</tbody></table>`;
}

export function renderWatchlist(element, symbols, quotes) {
  if (symbols.length === 0) {
    element.innerHTML = `<p class="muted">Star a symbol (☆ or the <kbd>w</kbd> key) to watch it.</p>`;
    return;
  }
  element.innerHTML =
    `<ul class="watch">` +
    symbols
      .map((symbol) => {
        const q = quotes.get(symbol);
        return (
          `<li data-symbol="${escapeHtml(symbol)}"><button type="button" class="link" data-open="${escapeHtml(symbol)}">${escapeHtml(symbol)}</button>` +
          `<span class="num">${q ? formatPrice(q.price) : "—"}</span><span class="num ${signClass(q?.change_percent)}">${q ? formatPercent(q.change_percent) : ""}</span></li>`
        );
      })
      .join("") +
    `</ul>`;
}

export function renderLeaderboard(element, leaderboard) {
  const entries = listOf(leaderboard);
  if (!leaderboard || entries.length === 0) {
    element.innerHTML = `<p class="muted">Leaderboard not computed yet.</p>`;
    return;
  }
  element.innerHTML =
    `<ol class="ranking">` +
    entries
      .map((e, i) => {
        const value = e.total_value ?? e.value ?? e.portfolio_value;
        const ret = e.return_percent ?? e.pnl_percent ?? e.gain_percent;
        return (
          `<li><span class="rank">${escapeHtml(e.rank ?? i + 1)}</span><span>${escapeHtml(e.username ?? e.trader ?? "")}</span>` +
          `<span class="num">${value !== undefined ? formatMoney(value) : ""}</span><span class="num ${signClass(ret)}">${ret !== undefined ? formatPercent(ret) : ""}</span></li>`
        );
      })
      .join("") +
    `</ol><p class="muted computed">Computed ${escapeHtml(formatTime(leaderboard.computed_at))}</p>`;
}

export function renderAnalytics(element, analytics) {
  if (!analytics) {
    element.innerHTML = `<p class="muted">Analytics not computed yet.</p>`;
    return;
  }
  const scalars = Object.entries(analytics).filter(([k, v]) => k !== "computed_at" && (typeof v !== "object" || v === null));
  const lists = Object.entries(analytics).filter(([, v]) => Array.isArray(v) && v.length);
  const label = (k) => k.replaceAll("_", " ");
  element.innerHTML =
    `<dl class="figures">${scalars.map(([k, v]) => `<div><dt>${escapeHtml(label(k))}</dt><dd>${escapeHtml(Number.isInteger(v) ? v.toLocaleString("en-US") : typeof v === "number" ? formatPrice(v) : v ?? "—")}</dd></div>`).join("")}</dl>` +
    lists
      .map(
        ([k, v]) =>
          `<h3>${escapeHtml(label(k))}</h3><ul class="compact">${v
            .slice(0, 5)
            .map((item) => `<li>${escapeHtml(typeof item === "object" ? Object.values(item).join(" · ") : item)}</li>`)
            .join("")}</ul>`,
      )
      .join("") +
    `<p class="muted computed">Computed ${escapeHtml(formatTime(analytics.computed_at))}</p>`;
}
