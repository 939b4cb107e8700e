// Number formatting for the table and panels (display only: money arithmetic happens on the server).

const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

export const formatPrice = (value) => money.format(Number(value));
export const formatSigned = (value) => (Number(value) > 0 ? "+" : "") + money.format(Number(value));
export const formatPercent = (value) => `${formatSigned(value)}%`;
export const formatVolume = (value) => compact.format(Number(value));
export const formatMoney = (value) => `$${money.format(Number(value))}`;
export const signClass = (value) => (Number(value) > 0 ? "up" : Number(value) < 0 ? "down" : "flat");

function asDate(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = typeof value === "number" ? new Date(value) : new Date(String(value));
  return Number.isNaN(date.getTime()) ? null : date;
}

export function formatTime(value) {
  return asDate(value)?.toLocaleString() ?? "—";
}

// Today's trades show the time only; older ones the date.
export function formatShortTime(value) {
  const date = asDate(value);
  if (date === null) return "—";
  return date.toDateString() === new Date().toDateString() ? date.toLocaleTimeString() : date.toLocaleDateString();
}

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
