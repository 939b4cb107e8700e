// The trader's own events in the page: in sequence across reconnects (no gaps, no duplicates), and what each
// event changes (trades, open orders, cash). The server side is modelled on apps/market/feed/account.py:
// an account_ready on connect, live events in order (missing ones replayed from a bounded history), and
// account_resume answered from the history, with an account_gap first when it cannot continue.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";

import {
  AccountSequence,
  applyAccountEvent,
  describeFill,
  loadFresh,
  OpenOrdersLedger,
  SliceVersions,
  withReadyInvoices,
} from "../../static/src/account.js";

const RUNS = { numRuns: 300 };

class ModelServer {
  constructor(historyLimit) {
    this.historyLimit = historyLimit;
    this.latest = 0;
    this.history = []; // stored sequence numbers, oldest first
    this.pubsub = []; // published, not yet routed to the connection
    this.conn = null;
    this.resubscribed = false;
  }

  publish({ lost = false } = {}) {
    this.latest += 1;
    this.history.push(this.latest);
    if (this.history.length > this.historyLimit) this.history.shift();
    if (!lost) this.pubsub.push(this.latest);
    else this.resubscribed = true; // lost with the pub/sub connection, which redis-py subscribes again
  }

  // The subscription is confirmed again: every connection catches up from the history.
  resync() {
    if (!this.resubscribed) return;
    this.resubscribed = false;
    if (this.conn) this.conn.toClient.push(...this.replay(this.conn.lastSent));
  }

  connect() {
    this.conn = { lastSent: this.latest, toClient: [{ type: "account_ready", seq: this.latest }], toServer: [] };
  }

  replay(after) {
    const frames = this.history.filter((s) => s > after).map((seq) => ({ type: "account", seq }));
    const first = frames.length ? frames[0].seq : this.latest + 1;
    const gap = after > this.latest || (after < this.latest && first !== after + 1);
    this.conn.lastSent = this.latest;
    return [...(gap ? [{ type: "account_gap", after, next: first }] : []), ...frames];
  }

  route() {
    const seq = this.pubsub.shift();
    const conn = this.conn;
    if (seq === undefined || conn === null || seq <= conn.lastSent) return;
    if (seq === conn.lastSent + 1) {
      conn.lastSent = seq;
      conn.toClient.push({ type: "account", seq });
    } else {
      conn.toClient.push(...this.replay(conn.lastSent));
    }
  }

  receive() {
    const message = this.conn?.toServer.shift();
    if (message?.type === "account_resume") this.conn.toClient.push(...this.replay(message.after));
  }
}

class ModelClient {
  constructor() {
    this.sequence = new AccountSequence(0); // the page's embedded data: everything up to event 0
    this.delivered = [];
    this.announcedLost = [];
  }

  receive(server) {
    const frame = server.conn?.toClient.shift();
    if (frame === undefined) return;
    const before = this.sequence.last;
    const { deliver, send, refresh } = this.sequence.receive(frame);
    if (deliver) this.delivered.push(deliver.seq);
    if (send) server.conn.toServer.push(send);
    if (refresh) for (let s = before + 1; s < frame.next; s++) this.announcedLost.push(s);
  }
}

const step = fc.constantFrom("publish", "publish", "lose", "resync", "route", "route", "toClient", "toClient", "toServer", "drop");

function play(steps, historyLimit) {
  const server = new ModelServer(historyLimit);
  const client = new ModelClient();
  server.connect();
  for (const action of steps) {
    if (action === "publish") server.publish();
    else if (action === "lose") server.publish({ lost: true });
    else if (action === "route") server.route();
    else if (action === "resync") server.resync();
    else if (action === "toServer") server.receive();
    else if (action === "toClient") client.receive(server);
    else if (server.conn === null) server.connect();
    else {
      server.conn = null; // the connection drops with whatever was in flight
      client.sequence.disconnected();
    }
  }
  if (server.conn === null) server.connect();
  for (let guard = 0; guard < 10_000; guard++) {
    const idle = !server.pubsub.length && !server.conn.toClient.length && !server.conn.toServer.length;
    if (idle && !server.resubscribed) break;
    server.resync();
    server.route();
    server.receive();
    client.receive(server);
  }
  return { server, client };
}

test("Property: after any reconnects and lost messages, every event is applied once, in order, with no gap", () => {
  fc.assert(
    fc.property(fc.array(step, { maxLength: 80 }), (steps) => {
      const { server, client } = play(steps, 1_000); // the history holds everything: nothing may be missing
      assert.deepEqual(client.delivered, Array.from({ length: server.latest }, (_, i) => i + 1));
      assert.deepEqual(client.announcedLost, []);
      assert.equal(client.sequence.last, server.latest);
    }),
    RUNS,
  );
});

test("Property: with a short history, what is not applied was announced as a gap, and nothing twice", () => {
  fc.assert(
    fc.property(fc.array(step, { maxLength: 80 }), fc.integer({ min: 1, max: 4 }), (steps, limit) => {
      const { server, client } = play(steps, limit);
      for (let i = 1; i < client.delivered.length; i++) assert.ok(client.delivered[i] > client.delivered[i - 1]);
      const covered = new Set([...client.delivered, ...client.announcedLost]);
      assert.equal(covered.size, client.delivered.length + client.announcedLost.length); // disjoint
      for (let seq = 1; seq <= server.latest; seq++) assert.ok(covered.has(seq), `event ${seq} vanished silently`);
      assert.equal(client.sequence.last, server.latest);
    }),
    RUNS,
  );
});

test("a reconnect with a last number asks for what followed it; the first connection just starts there", () => {
  const sequence = new AccountSequence();
  assert.deepEqual(sequence.receive({ type: "account_ready", seq: 7 }), { deliver: null, send: null, refresh: false });
  assert.equal(sequence.receive({ type: "account", seq: 8 }).deliver.seq, 8);
  sequence.disconnected();
  assert.deepEqual(sequence.receive({ type: "account_ready", seq: 11 }).send, { type: "account_resume", after: 8 });
  assert.equal(sequence.receive({ type: "account", seq: 12 }).deliver, null); // covered by the resume
  assert.equal(sequence.receive({ type: "account", seq: 9 }).deliver.seq, 9);
  assert.equal(sequence.receive({ type: "account", seq: 9 }).deliver, null); // a duplicate
  assert.deepEqual(sequence.receive({ type: "account_gap", after: 9, next: 20 }), { deliver: null, send: null, refresh: true });
  assert.equal(sequence.last, 19);
  assert.equal(sequence.receive({ type: "account", seq: "x" }).deliver, null); // garbage changes nothing
  assert.equal(sequence.last, 19);
});

const filled = { seq: 2, event: "order_filled", id: "o1", symbol: "ACME", side: "buy", quantity: 3, price: "10.00", type: "limit" };

test("a fill adds the trade (pending invoice) and closes the open order; cash follows when the event has it", () => {
  const ready = new Set();
  const state = {
    orders: [{ id: "old", invoice_status: "ready" }],
    openOrders: [{ id: "o1", status: "open", type: "limit" }],
    portfolio: { cash: "100.00", holdings: [] },
  };
  const next = applyAccountEvent(state, { ...filled, cash: "70.00", buying_power: "70.00" }, ready);
  assert.deepEqual(
    next.orders.map((o) => [o.id, o.invoice_status]),
    [
      ["o1", "pending"],
      ["old", "ready"],
    ],
  );
  assert.deepEqual(next.openOrders, []);
  assert.deepEqual(next.portfolio, { cash: "70.00", buying_power: "70.00", holdings: [] });
  assert.deepEqual(applyAccountEvent({ ...state, ...next }, filled, ready), {}); // the same fill again: nothing
});

test("an invoice announced before its trade is listed stays ready when the trade arrives", () => {
  const ready = new Set();
  const state = { orders: [], openOrders: [], portfolio: null };
  assert.deepEqual(applyAccountEvent(state, { seq: 3, event: "invoice_ready", id: "o1", invoice_status: "ready" }, ready), {});
  assert.equal(applyAccountEvent(state, filled, ready).orders[0].invoice_status, "ready");
  assert.equal(withReadyInvoices([{ id: "o1", invoice_status: "pending" }], ready)[0].invoice_status, "ready");
});

test("a resting order opens on acceptance and leaves on cancel or expiry; a market order never rests", () => {
  const ready = new Set();
  const accepted = { seq: 1, event: "order_accepted", order: { id: "r1", type: "limit", status: "open", symbol: "ACME" } };
  const opened = applyAccountEvent({ orders: [], openOrders: [] }, accepted, ready);
  assert.deepEqual(
    opened.openOrders.map((o) => o.id),
    ["r1"],
  );
  for (const event of ["order_cancelled", "order_expired"]) {
    const closed = applyAccountEvent({ orders: [], openOrders: opened.openOrders }, { event, order: { id: "r1" } }, ready);
    assert.deepEqual(closed.openOrders, []);
  }
  const market = { event: "order_accepted", id: "m1", type: "market", status: "accepted" };
  assert.deepEqual(applyAccountEvent({ orders: [], openOrders: [] }, market, ready), {});
  assert.equal(describeFill(filled), "Filled: Bought 3 ACME at 10.00.");
});

// The open-orders panel against a model server: orders open and settle there (each change published as an
// account event, delivered in order), GET /orders?status=open is read by the server at some moment after it
// was sent and answered at some later one, in any order, and a cancel's DELETE settles the order when the
// server takes it and tells the page when its answer arrives. The page is wired as account-panel.js wires it.
class OpenOrdersModel {
  constructor() {
    this.open = new Map(); // the server's open orders
    this.nextId = 1;
    this.events = []; // published, not yet applied by the page
    this.gets = []; // { token, answer: null | orders } sent, not yet answered
    this.deletes = []; // { id, ok } taken by the server, answer not yet arrived
    this.ledger = new OpenOrdersLedger();
    this.shown = []; // the store's openOrders
    this.accepted = new Set(); // ids whose order_accepted the page applied
    this.settled = new Set(); // ids the page heard are settled (a terminal event or a DELETE that succeeded)
  }

  place() {
    const order = { id: `o${this.nextId++}`, type: "limit", status: "open", symbol: "ACME" };
    this.open.set(order.id, order);
    this.events.push({ event: "order_accepted", order });
  }

  settle(pick, event) {
    const id = [...this.open.keys()][pick % Math.max(this.open.size, 1)];
    if (id === undefined) return;
    this.open.delete(id);
    this.events.push({ event, order: { id, status: event.replace("order_", "") } });
  }

  deliver() {
    const event = this.events.shift();
    if (!event) return;
    const next = applyAccountEvent({ openOrders: this.shown, orders: [] }, event, new Set(), this.ledger);
    if (next.openOrders) this.shown = next.openOrders;
    if (event.event === "order_accepted") this.accepted.add(event.order.id);
    else this.settled.add(event.order.id);
  }

  send() {
    this.gets.push({ token: this.ledger.requested(), answer: null });
  }

  read(pick) {
    const unread = this.gets.filter((g) => g.answer === null);
    if (unread.length) unread[pick % unread.length].answer = [...this.open.values()].map((o) => ({ ...o }));
  }

  answer(pick) {
    const read = this.gets.filter((g) => g.answer !== null);
    if (!read.length) return;
    const get = read[pick % read.length];
    this.gets.splice(this.gets.indexOf(get), 1);
    const openOrders = this.ledger.reconcile(get.answer, this.shown, get.token);
    if (openOrders) this.shown = openOrders;
  }

  // The trader clicks Cancel on a shown order; the server takes the DELETE at once.
  cancel(pick) {
    if (!this.shown.length) return;
    const id = this.shown[pick % this.shown.length].id;
    const ok = this.open.delete(id);
    if (ok) this.events.push({ event: "order_cancelled", order: { id, status: "cancelled" } });
    this.deletes.push({ id, ok });
  }

  cancelled(pick) {
    if (!this.deletes.length) return;
    const [{ id, ok }] = this.deletes.splice(pick % this.deletes.length, 1);
    if (ok) {
      this.ledger.settle(id);
      this.settled.add(id);
      this.shown = this.shown.filter((o) => o.id !== id);
    } else {
      this.send(); // a 409: the panel loads the open orders again
    }
  }

  play({ kind, pick }) {
    if (kind === "place") this.place();
    else if (kind === "fill") this.settle(pick, "order_filled");
    else if (kind === "expire") this.settle(pick, "order_expired");
    else if (kind === "cancelled elsewhere") this.settle(pick, "order_cancelled");
    else this[kind](pick);
  }
}

const openOrdersStep = fc.record({
  kind: fc.constantFrom("place", "place", "fill", "expire", "cancelled elsewhere", "deliver", "deliver", "send", "read", "answer", "cancel", "cancelled"),
  pick: fc.nat(),
});

function assertPanelConsistent(model) {
  const ids = model.shown.map((o) => o.id);
  assert.equal(new Set(ids).size, ids.length, `an order is shown twice: ${ids}`);
  for (const id of ids) assert.ok(!model.settled.has(id), `${id} is shown open after the page heard it settled`);
  for (const id of model.accepted) {
    if (model.open.has(id)) assert.ok(ids.includes(id), `${id} was opened by an event, is still open, and is not shown`);
  }
}

test("Property: open-orders answers, events and cancels in any interleaving never show a settled order, never drop one an event opened, never show one twice", () => {
  fc.assert(
    fc.property(fc.array(openOrdersStep, { maxLength: 120, size: "max" }), (steps) => {
      const model = new OpenOrdersModel();
      model.send(); // the panel's first load
      for (const step of steps) {
        model.play(step);
        assertPanelConsistent(model);
      }
    }),
    RUNS,
  );
});

test("Property: once every event and answer has arrived, a fresh load shows exactly the server's open orders", () => {
  fc.assert(
    fc.property(fc.array(openOrdersStep, { maxLength: 120, size: "max" }), (steps) => {
      const model = new OpenOrdersModel();
      model.send();
      for (const step of steps) model.play(step);
      while (model.deletes.length) model.cancelled(0);
      while (model.events.length) model.deliver();
      model.send();
      while (model.gets.length) {
        model.read(0);
        model.answer(model.gets.length - 1); // the fresh load last
      }
      assertPanelConsistent(model);
      assert.deepEqual(model.shown.map((o) => o.id).sort(), [...model.open.keys()].sort());
    }),
    RUNS,
  );
});

test("a load read before a cancel and answered after it does not bring the order back; one read before an acceptance keeps it", () => {
  const ledger = new OpenOrdersLedger();
  const resting = { id: "r1", type: "limit", status: "open" };
  const token = ledger.requested();
  ledger.settle("r1"); // the DELETE succeeded
  assert.deepEqual(ledger.reconcile([resting], [], token), []);
  const late = ledger.requested();
  const accepted = { event: "order_accepted", order: { id: "r2", type: "limit", status: "open" } };
  const opened = applyAccountEvent({ openOrders: [] }, accepted, new Set(), ledger).openOrders;
  assert.deepEqual(
    ledger.reconcile([], opened, late).map((o) => o.id),
    ["r2"],
  );
  assert.equal(ledger.reconcile([resting], opened, token), null); // older than the answer already applied
  const reopened = applyAccountEvent({ openOrders: [], orders: [] }, { event: "order_accepted", order: resting }, new Set(), ledger);
  assert.deepEqual(reopened, {}); // an acceptance arriving after its cancel's answer opens nothing
});

// A trades (or portfolio) answer and the events racing it: the server's state moves on with every event;
// each fetch reads the state at one moment of its flight, and events may be applied while it is away.
test("Property: a trades or portfolio answer read before an event never undoes it; one read after is applied", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(fc.nat(3), fc.boolean()), { minLength: 1, maxLength: 6 }), async (flights) => {
      const versions = new SliceVersions();
      let server = 0; // the state the server holds: how many events it has committed
      let shown = 0; // what the page shows: events applied, or an answer
      let flight = 0;
      const event = () => {
        server += 1;
        versions.changed("orders");
        shown = server; // the event itself brings the page up to date
      };
      const fetch = async () => {
        const [eventsWhileAway, readBeforeThem] = flights[Math.min(flight, flights.length - 1)];
        flight += 1;
        const readNow = server;
        for (let i = 0; i < eventsWhileAway; i += 1) event();
        return readBeforeThem ? readNow : server;
      };
      await loadFresh(versions, "orders", fetch, (value) => {
        shown = value;
      });
      assert.equal(shown, server); // never older than the events applied
    }),
    RUNS,
  );
});
