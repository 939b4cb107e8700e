// The market feed: one WebSocket, the wanted symbols kept subscribed across reconnects; a signed-in
// trader's own events (`account_*` frames) arrive on it too and go to `onAccount`.

import { backoffDelay } from "./backoff.js";

const PING_EVERY_MS = 25000;

export class MarketSocket {
  constructor({
    url,
    onUpdates,
    onStatus,
    onError = () => {},
    onNotice = () => {},
    onAccount = () => {},
    maxSymbols = 200,
  }) {
    this.url = url;
    this.onUpdates = onUpdates;
    this.onStatus = onStatus;
    this.onError = onError;
    this.onNotice = onNotice; // the server telling this client about its feed, e.g. {"code": "updates_conflated"}
    this.onAccount = onAccount;
    this.maxSymbols = maxSymbols;
    this.wanted = new Set();
    this.subscribed = new Set(); // what the server has been told on the current connection
    this.attempt = 0;
    this.socket = null;
    this.pingTimer = null;
    this.status = "connecting";
  }

  connect() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.subscribed = new Set();
      this.sync();
      this.setStatus("live");
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
    });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", () => {
      clearInterval(this.pingTimer);
      if (this.socket !== socket) return;
      this.setStatus("reconnecting");
      setTimeout(() => this.connect(), backoffDelay(this.attempt++));
    });
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      console.warn("feed: a frame that is not JSON was ignored");
      return;
    }
    if (message.type === "stock_updates" && Array.isArray(message.updates)) this.onUpdates(message.updates, message);
    else if (typeof message.type === "string" && message.type.startsWith("account")) this.onAccount(message);
    else if (message.type === "error") this.onError(message);
    else if (message.type === "notice" && typeof message.code === "string") this.onNotice(message);
  }

  // Keep exactly these symbols subscribed (the first `maxSymbols` distinct ones: the feed's per-connection cap).
  want(symbols) {
    this.wanted = new Set([...new Set(symbols)].slice(0, this.maxSymbols));
    this.sync();
  }

  sync() {
    if (this.socket?.readyState !== WebSocket.OPEN) return;
    const drop = [...this.subscribed].filter((s) => !this.wanted.has(s));
    const add = [...this.wanted].filter((s) => !this.subscribed.has(s));
    if (drop.length) this.send({ type: "unsubscribe", symbols: drop });
    if (add.length) this.send({ type: "subscribe", symbols: add });
    this.subscribed = new Set(this.wanted);
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  setStatus(status) {
    this.status = status;
    this.onStatus(status);
  }
}
