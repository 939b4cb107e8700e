// The market table. Above 50 rows only the rows on screen exist in the DOM (Property 18), each
// absolutely positioned, recycled as the range moves; a quote change touches only its row's changed
// cells (Property 16). `?render=naive` instead rebuilds every row on every message (the CPU baseline).

import { escapeHtml, formatPercent, formatPrice, formatSigned, formatVolume, signClass } from "./format.js";
import { shouldVirtualise, visibleRange } from "./virtual.js";

const SVG = "http://www.w3.org/2000/svg";
const TREND_WIDTH = 64;
const TREND_HEIGHT = 18;
// A flash is a class on for FLASH_MS, then off: two style changes per update. A CSS animation
// instead repaints the cell every frame while it runs, which cost ~12 % of a core at 500 ticks/s.
const FLASH_MS = 600;

export function trendPoints(prices) {
  if (prices.length < 2) return `0,${TREND_HEIGHT / 2} ${TREND_WIDTH},${TREND_HEIGHT / 2}`;
  const low = Math.min(...prices);
  const span = Math.max(...prices) - low || 1;
  const step = TREND_WIDTH / (prices.length - 1);
  return prices.map((p, i) => `${(i * step).toFixed(1)},${(TREND_HEIGHT - 1 - ((p - low) / span) * (TREND_HEIGHT - 2)).toFixed(1)}`).join(" ");
}

const CELL_TEXT = {
  price: (q) => formatPrice(q.price),
  change: (q) => formatSigned(q.change),
  change_percent: (q) => formatPercent(q.change_percent),
  volume: (q) => formatVolume(q.volume),
};

export class MarketTable {
  constructor({ viewport, quotes, trends, isWatched, onOpen, onToggleWatch, onRangeChange, naive = false }) {
    this.viewport = viewport;
    this.quotes = quotes;
    this.trends = trends;
    this.isWatched = isWatched;
    this.onOpen = onOpen;
    this.onToggleWatch = onToggleWatch;
    this.onRangeChange = onRangeChange;
    this.naive = naive;
    this.symbols = [];
    this.rows = new Map(); // symbol -> row element currently in the DOM
    this.range = { start: 0, end: 0 };
    this.active = 0;
    this.flashing = []; // price cells lit by the current apply, cleared together by one timer
    this.mode = "virtual";
    this.rowHeight = 0;

    this.spacer = document.createElement("div");
    this.spacer.className = "mt-spacer";
    viewport.replaceChildren(this.spacer);
    viewport.addEventListener("scroll", () => this.renderRange(), { passive: true });
    viewport.addEventListener("click", (event) => this.click(event));
    viewport.addEventListener("keydown", (event) => this.key(event));
    new ResizeObserver(() => this.renderRange()).observe(viewport);
  }

  // A new row order (sort, filter, search): lay the rows out again.
  setRows(symbols) {
    this.symbols = symbols;
    this.active = Math.min(this.active, Math.max(0, symbols.length - 1));
    this.viewport.setAttribute("aria-rowcount", String(symbols.length));
    if (this.naive) {
      this.rowHeight = parseFloat(getComputedStyle(this.viewport).getPropertyValue("--row-height")) || 28;
      this.range = { start: 0, end: 0 };
      this.renderAllNaive();
      return this.renderRange();
    }
    for (const row of this.rows.values()) row.remove();
    this.rows.clear();
    this.range = { start: 0, end: 0 };
    try {
      if (!shouldVirtualise(symbols.length)) return this.renderPlain();
      this.rowHeight = this.measureRowHeight();
      this.mode = "virtual";
      this.viewport.classList.remove("mt-plain");
      this.spacer.style.height = `${symbols.length * this.rowHeight}px`;
      this.renderRange();
    } catch (error) {
      console.warn("market table: virtual scrolling failed, falling back to normal scrolling (slower)", error);
      this.renderPlain();
    }
  }

  measureRowHeight() {
    const height = parseFloat(getComputedStyle(this.viewport).getPropertyValue("--row-height"));
    if (!(height > 0) || !(this.viewport.clientHeight > 0)) throw new Error(`cannot measure rows (row ${height}px)`);
    return height;
  }

  // Normal flow, every row in the DOM: short lists, and the fallback when virtualisation fails.
  renderPlain() {
    this.mode = "plain";
    this.viewport.classList.add("mt-plain");
    this.spacer.style.height = "";
    const fragment = document.createDocumentFragment();
    this.symbols.forEach((symbol, index) => {
      const row = this.buildRow(symbol, index);
      this.rows.set(symbol, row);
      fragment.append(row);
    });
    this.spacer.replaceChildren(fragment);
    this.range = { start: 0, end: this.symbols.length };
    this.onRangeChange(this.visibleSymbols());
  }

  renderRange() {
    if (this.mode === "plain") return;
    const { start, end } = visibleRange({
      scrollTop: this.viewport.scrollTop,
      viewportHeight: this.viewport.clientHeight,
      rowHeight: this.rowHeight,
      total: this.symbols.length,
    });
    if (start === this.range.start && end === this.range.end) return;
    this.range = { start, end };
    // The naive baseline subscribes to the same rows as the optimised page; only rendering differs.
    if (this.naive) return this.onRangeChange(this.visibleSymbols());
    const wanted = new Set(this.symbols.slice(start, end));
    const spare = [];
    for (const [symbol, row] of this.rows) {
      if (!wanted.has(symbol)) {
        spare.push(row);
        this.rows.delete(symbol);
      }
    }
    for (let index = start; index < end; index++) {
      const symbol = this.symbols[index];
      if (this.rows.has(symbol)) continue;
      const row = spare.pop();
      if (row) this.fillRow(row, symbol, index);
      this.rows.set(symbol, row ?? this.spacer.appendChild(this.buildRow(symbol, index)));
    }
    for (const row of spare) row.remove();
    this.onRangeChange(this.visibleSymbols());
  }

  visibleSymbols() {
    return this.symbols.slice(this.range.start, this.range.end);
  }

  buildRow(symbol, index) {
    const row = document.createElement("div");
    row.className = "mt-row";
    row.setAttribute("role", "row");
    const cells = ["watch", "ticker", "name", "price", "change", "change_percent", "volume", "trend"].map((name) => {
      const cell = document.createElement("span");
      cell.className = `c-${name}`;
      cell.setAttribute("role", "gridcell");
      return cell;
    });
    const star = document.createElement("button");
    star.type = "button";
    star.className = "star";
    star.tabIndex = -1;
    cells[0].append(star);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${TREND_WIDTH} ${TREND_HEIGHT}`);
    svg.setAttribute("aria-hidden", "true");
    svg.append(document.createElementNS(SVG, "polyline"));
    cells[7].append(svg);
    row.append(...cells);
    this.fillRow(row, symbol, index);
    return row;
  }

  fillRow(row, symbol, index) {
    const quote = this.quotes.get(symbol);
    const [watch, ticker, name, , , , , trend] = row.children;
    row.dataset.symbol = symbol;
    row.dataset.index = String(index);
    row.setAttribute("aria-rowindex", String(index + 1));
    row.classList.toggle("active", index === this.active);
    if (this.mode === "virtual") row.style.transform = `translateY(${index * this.rowHeight}px)`;
    const watched = this.isWatched(symbol);
    const star = watch.firstChild;
    star.textContent = watched ? "★" : "☆";
    star.setAttribute("aria-label", `${watched ? "Remove" : "Add"} ${symbol} ${watched ? "from" : "to"} watchlist`);
    ticker.textContent = symbol;
    name.textContent = quote.name;
    name.title = quote.name;
    for (const field of Object.keys(CELL_TEXT)) this.setCell(row, field, quote, 0);
    trend.firstChild.firstChild.setAttribute("points", trendPoints(this.trends.get(symbol) ?? []));
  }

  setCell(row, field, quote, direction) {
    const cell = row.querySelector(`.c-${field}`);
    cell.textContent = CELL_TEXT[field](quote);
    if (field === "price") {
      cell.className = direction ? `c-price flash-${direction > 0 ? "up" : "down"}` : "c-price";
      if (direction) {
        cell.flashUntil = performance.now() + FLASH_MS;
        this.flashing.push(cell);
      }
    } else if (field !== "volume") {
      cell.className = `c-${field} ${signClass(quote[field])}`;
    }
  }

  // Touch only the changed cells of rows on screen; rows off screen are filled when they scroll in.
  applyChanges(changes) {
    if (this.naive) return this.renderAllNaive();
    for (const [symbol, change] of changes) {
      const row = this.rows.get(symbol);
      if (row === undefined) continue;
      const quote = this.quotes.get(symbol);
      for (const field of change.fields) this.setCell(row, field, quote, change.direction);
      if (change.fields.includes("price")) {
        row.querySelector(".c-trend polyline").setAttribute("points", trendPoints(this.trends.get(symbol) ?? []));
      }
    }
    if (this.flashing.length) {
      const lit = this.flashing;
      this.flashing = [];
      setTimeout(() => {
        const now = performance.now();
        for (const cell of lit) if (cell.flashUntil <= now + 1) cell.className = "c-price";
      }, FLASH_MS);
    }
  }

  refreshWatch(symbol) {
    const row = this.rows.get(symbol);
    if (row) this.fillRow(row, symbol, Number(row.dataset.index));
  }

  // The baseline the benchmark measures against: every row rebuilt from scratch.
  renderAllNaive() {
    this.mode = "naive";
    this.viewport.classList.add("mt-plain");
    this.spacer.style.height = "";
    this.spacer.innerHTML = this.symbols
      .map((symbol, index) => {
        const q = this.quotes.get(symbol);
        return (
          `<div class="mt-row${index === this.active ? " active" : ""}" role="row" data-symbol="${escapeHtml(symbol)}" data-index="${index}">` +
          `<span class="c-watch"><button type="button" class="star" tabindex="-1">${this.isWatched(symbol) ? "★" : "☆"}</button></span>` +
          `<span class="c-ticker">${escapeHtml(symbol)}</span><span class="c-name">${escapeHtml(q.name)}</span>` +
          `<span class="c-price">${CELL_TEXT.price(q)}</span>` +
          `<span class="c-change ${signClass(q.change)}">${CELL_TEXT.change(q)}</span>` +
          `<span class="c-change_percent ${signClass(q.change_percent)}">${CELL_TEXT.change_percent(q)}</span>` +
          `<span class="c-volume">${CELL_TEXT.volume(q)}</span>` +
          `<span class="c-trend"><svg viewBox="0 0 ${TREND_WIDTH} ${TREND_HEIGHT}" aria-hidden="true"><polyline points="${trendPoints(this.trends.get(symbol) ?? [])}"/></svg></span></div>`
        );
      })
      .join("");
    this.rows = new Map([...this.spacer.children].map((row) => [row.dataset.symbol, row]));
  }

  click(event) {
    const row = event.target.closest(".mt-row");
    if (!row) return;
    if (event.target.closest(".star")) this.onToggleWatch(row.dataset.symbol);
    else this.select(Number(row.dataset.index), true);
  }

  key(event) {
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: 15, PageUp: -15, Home: -Infinity, End: Infinity };
    if (event.key in moves) {
      event.preventDefault();
      const target = Math.max(0, Math.min(this.symbols.length - 1, this.active + moves[event.key]));
      this.select(target, false);
    } else if (event.key === "Enter" && this.symbols.length) {
      this.onOpen(this.symbols[this.active]);
    } else if ((event.key === "w" || event.key === "*") && this.symbols.length) {
      this.onToggleWatch(this.symbols[this.active]);
    }
  }

  select(index, open) {
    this.rows.get(this.symbols[this.active])?.classList.remove("active");
    this.active = index;
    const symbol = this.symbols[index];
    if (this.mode === "virtual" || this.mode === "naive") {
      const top = index * this.rowHeight;
      const bottom = top + this.rowHeight;
      if (top < this.viewport.scrollTop) this.viewport.scrollTop = top;
      else if (bottom > this.viewport.scrollTop + this.viewport.clientHeight) {
        this.viewport.scrollTop = bottom - this.viewport.clientHeight;
      }
      this.renderRange();
    } else {
      this.rows.get(symbol)?.scrollIntoView({ block: "nearest" });
    }
    this.rows.get(symbol)?.classList.add("active");
    if (open) this.onOpen(symbol);
  }
}
