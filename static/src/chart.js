// The symbol chart (lightweight-charts): recent points from the Redis ring first, stored history
// fetched page by page when the trader scrolls back, live ticks appended as they are applied.

import { createChart, LineSeries } from "lightweight-charts";

const HISTORY_PAGE = 100; // the history endpoint's page limit

// Points and ticks carry `timestamp` in ms since the epoch; the chart wants seconds.
export function toChartPoint(point) {
  return { time: Math.floor(point.timestamp / 1000), value: Number(point.price) };
}

// Ascending, one point per second (the last one wins), as the library requires.
function bySecond(points) {
  const latest = new Map();
  for (const point of points) latest.set(point.time, point);
  return [...latest.values()].sort((a, b) => a.time - b.time);
}

export function chartSeries(points) {
  return bySecond(points.map(toChartPoint).filter((p) => Number.isFinite(p.time) && Number.isFinite(p.value)));
}

export class SymbolChart {
  constructor({ container, api, onError }) {
    this.container = container;
    this.api = api;
    this.onError = onError;
    this.chart = null;
    this.series = null;
    this.symbol = null;
    this.points = [];
    this.loadingOlder = false;
    this.exhausted = false;
    this.cursor = null;
    this.scrolledByTrader = false;
  }

  ensureChart() {
    if (this.chart) return;
    const style = getComputedStyle(document.documentElement);
    this.chart = createChart(this.container, {
      autoSize: true,
      layout: { background: { color: "transparent" }, textColor: style.getPropertyValue("--muted").trim() || "#8b949e" },
      grid: { vertLines: { visible: false }, horzLines: { color: style.getPropertyValue("--border").trim() || "#30363d" } },
      timeScale: { timeVisible: true, secondsVisible: true },
    });
    this.series = this.chart.addSeries(LineSeries, { color: style.getPropertyValue("--accent").trim() || "#2f81f7", lineWidth: 2 });
    // Page back only when the trader scrolls towards the left edge: a fitted short series also sits
    // at the edge and would otherwise pull in the whole stored history page after page.
    for (const gesture of ["wheel", "pointerdown", "touchstart"]) {
      this.container.addEventListener(gesture, () => (this.scrolledByTrader = true), { passive: true });
    }
    this.chart.timeScale().subscribeVisibleLogicalRangeChange((range) => {
      if (range && range.from < 10 && this.scrolledByTrader) this.loadOlder();
    });
  }

  applyTheme() {
    if (!this.chart) return;
    const style = getComputedStyle(document.documentElement);
    this.chart.applyOptions({
      layout: { textColor: style.getPropertyValue("--muted").trim() },
      grid: { horzLines: { color: style.getPropertyValue("--border").trim() } },
    });
    this.series.applyOptions({ color: style.getPropertyValue("--accent").trim() });
  }

  async open(symbol) {
    this.ensureChart();
    this.symbol = symbol;
    this.points = [];
    this.scrolledByTrader = false;
    this.exhausted = false;
    this.cursor = null;
    this.series.setData([]);
    try {
      const recent = await this.api.get(`/api/v1/dashboard/chart/${encodeURIComponent(symbol)}`);
      if (this.symbol !== symbol) return;
      this.points = chartSeries(recent.points);
      this.cursor = recent.before;
      this.series.setData(this.points);
      this.chart.timeScale().fitContent();
      if (this.points.length < 10) await this.loadOlder();
    } catch (error) {
      this.onError(`Chart for ${symbol}: ${error.message}`);
    }
  }

  async loadOlder() {
    if (this.loadingOlder || this.exhausted || !this.symbol) return;
    this.loadingOlder = true;
    const symbol = this.symbol;
    try {
      const query = `limit=${HISTORY_PAGE}${this.cursor ? `&before=${encodeURIComponent(this.cursor)}` : ""}`;
      const page = await this.api.get(`/api/v1/symbols/${encodeURIComponent(symbol)}/history?${query}`);
      if (this.symbol !== symbol) return;
      this.cursor = page.nextCursor;
      const older = chartSeries(page.data);
      if (!page.nextCursor) this.exhausted = true;
      this.points = bySecond([...older, ...this.points]);
      this.series.setData(this.points);
    } catch (error) {
      this.exhausted = true;
      this.onError(`History for ${symbol}: ${error.message}`);
    } finally {
      this.loadingOlder = false;
    }
  }

  // A live tick of the open symbol (already latest-wins filtered by the store).
  push(update) {
    if (!this.series || update.symbol !== this.symbol) return;
    const point = toChartPoint(update);
    const last = this.points.at(-1);
    if (last && point.time < last.time) return;
    if (last && point.time === last.time) this.points[this.points.length - 1] = point;
    else this.points.push(point);
    this.series.update(point);
  }
}
