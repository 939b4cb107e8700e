// A scripted stand-in for the browser's WebSocket, shared by the node tests of ws.js: every instance is
// kept in `sockets` (newest last), records what the page sent, and is driven with `emit(type, event)`.
import { afterEach, beforeEach, mock } from "node:test";

export const sockets = [];

export class ScriptedSocket {
  static OPEN = 1;
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.listeners = {};
    sockets.push(this);
  }
  addEventListener(type, listener) {
    this.listeners[type] ??= [];
    this.listeners[type].push(listener);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  emit(type, event = {}) {
    if (type === "open") this.readyState = ScriptedSocket.OPEN;
    if (type === "close") this.readyState = 3;
    for (const listener of this.listeners[type] ?? []) listener(event);
  }
}

// Each test starts with no sockets, the scripted WebSocket installed and node's fake timers on.
export function useScriptedSockets() {
  beforeEach(() => {
    sockets.length = 0;
    globalThis.WebSocket = ScriptedSocket;
    mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  });
  afterEach(() => mock.timers.reset());
}
