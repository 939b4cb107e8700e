// Dashboard state in slices; a view hears only about the slice it reads, and only when it changed
// (Property 17). Quotes are diffed field by field so a row touches only the cells that moved (16).

export const QUOTE_FIELDS = ["price", "change", "change_percent", "volume"];

// The fields of `quote` that `update` changes; none when the update is older (latest-wins).
export function changedFields(quote, update) {
  if (quote === undefined) return [];
  if ((update.timestamp ?? 0) < (quote.timestamp ?? 0)) return [];
  return QUOTE_FIELDS.filter((field) => update[field] !== undefined && update[field] !== quote[field]);
}

// Apply a batch to the quotes map in place; returns symbol -> {fields, direction} for rows that changed.
export function applyQuoteUpdates(quotes, updates) {
  const changes = new Map();
  for (const update of updates) {
    const quote = quotes.get(update.symbol);
    const fields = changedFields(quote, update);
    if (quote === undefined || (update.timestamp ?? 0) < (quote.timestamp ?? 0)) continue;
    quote.timestamp = update.timestamp ?? quote.timestamp;
    if (fields.length === 0) continue;
    const direction = fields.includes("price") ? Math.sign(update.price - quote.price) : 0;
    for (const field of fields) quote[field] = update[field];
    const earlier = changes.get(update.symbol);
    changes.set(update.symbol, {
      fields: earlier ? [...new Set([...earlier.fields, ...fields])] : fields,
      direction: direction || earlier?.direction || 0,
    });
  }
  return changes;
}

export function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keysA = Object.keys(a);
  if (keysA.length !== Object.keys(b).length) return false;
  return keysA.every((key) => Object.hasOwn(b, key) && deepEqual(a[key], b[key]));
}

export function createStore(initial) {
  const state = { ...initial };
  const listeners = new Map();
  return {
    get(slice) {
      return state[slice];
    },
    // Returns whether anything was notified: an equal value re-renders nothing.
    set(slice, value) {
      if (deepEqual(state[slice], value)) return false;
      state[slice] = value;
      for (const listener of listeners.get(slice) ?? []) listener(value);
      return true;
    },
    subscribe(slice, listener) {
      if (!listeners.has(slice)) listeners.set(slice, new Set());
      listeners.get(slice).add(listener);
      return () => listeners.get(slice).delete(listener);
    },
  };
}
