// Which rows of a long list are on screen (Property 18: above 50 rows only these exist in the DOM).

export const VIRTUALISE_ABOVE = 50;
export const OVERSCAN_ROWS = 4;

export function shouldVirtualise(rowCount) {
  return rowCount > VIRTUALISE_ABOVE;
}

// Rows [start, end) cover every row that intersects the viewport, plus `overscan` rows each side
// so a short scroll shows rows that are already there. `offset` is where row `start` sits.
export function visibleRange({ scrollTop, viewportHeight, rowHeight, total, overscan = OVERSCAN_ROWS }) {
  if (!(total > 0) || !(rowHeight > 0) || !(viewportHeight > 0)) return { start: 0, end: 0, offset: 0 };
  const maxScroll = Math.max(0, total * rowHeight - viewportHeight);
  const top = Math.min(Math.max(0, scrollTop || 0), maxScroll);
  const firstVisible = Math.floor(top / rowHeight);
  const endVisible = Math.ceil((top + viewportHeight) / rowHeight);
  const start = Math.max(0, firstVisible - overscan);
  const end = Math.min(total, endVisible + overscan);
  return { start, end, offset: start * rowHeight };
}
