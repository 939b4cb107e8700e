// Gathering live updates and applying them at most once per interval (Property 20: <= 10 state updates/s).

export const APPLY_INTERVAL_MS = 100;

// Latest-wins by server timestamp: an older update never replaces a newer one for the same symbol,
// whatever order frames arrive in (e.g. a reconnect replaying a quote we already have).
export function mergeLatest(pending, updates) {
  for (const update of updates) {
    const held = pending.get(update.symbol);
    if (held === undefined || update.timestamp >= held.timestamp) pending.set(update.symbol, update);
  }
  return pending;
}

// A batcher collects updates from any number of frames and hands `apply` one merged batch, never
// sooner than `intervalMs` after the previous one. `now` and `setTimer` are injectable so the
// same code runs under a fake clock in tests.
export function createBatcher({
  apply,
  intervalMs = APPLY_INTERVAL_MS,
  now = () => performance.now(),
  setTimer = (callback, ms) => setTimeout(callback, ms),
}) {
  let pending = new Map();
  let timerSet = false;
  let lastApply = -Infinity;

  function schedule() {
    timerSet = true;
    setTimer(flush, Math.max(0, lastApply + intervalMs - now()));
  }

  function flush() {
    timerSet = false;
    if (pending.size === 0) return;
    // A timer may fire a hair early against the clock; the interval is the promise, so wait again.
    if (now() - lastApply < intervalMs) {
      schedule();
      return;
    }
    const batch = [...pending.values()];
    pending = new Map();
    lastApply = now();
    apply(batch);
  }

  return {
    push(updates) {
      if (updates.length === 0) return;
      mergeLatest(pending, updates);
      if (!timerSet) schedule();
    },
    get pendingCount() {
      return pending.size;
    },
  };
}

// Run `callback` once, `waitMs` after the last call (e.g. re-subscribing after scrolling stops).
export function debounce(callback, waitMs, { setTimer = setTimeout, clearTimer = clearTimeout } = {}) {
  let handle = null;
  return (...args) => {
    if (handle !== null) clearTimer(handle);
    handle = setTimer(() => {
      handle = null;
      callback(...args);
    }, waitMs);
  };
}
