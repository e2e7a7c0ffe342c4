// The WebSocket side of PROTOCOL.md: connect (the browser sends the session cookie), sync right after hello with the
// last seq seen per conversation (and, protocol 1.1, the last change_seq applied), reconnect on
// its own with backoff.

const MAX_BACKOFF_MS = 10000;
const CLOSE_REPLACED = 4409; // a newer socket of this device (gateway/registry.py)

export class Socket {
  /**
   * @param {object} o
   * @param {string} o.deviceId
   * @param {() => object} o.cursors  the last seq seen per conversation, for sync
   * @param {() => object} o.changeCursors  the last change_seq applied per conversation
   * @param {(frame: object) => void} o.onFrame
   * @param {(status: "connecting"|"syncing"|"online"|"offline", info?: object) => void} o.onStatus
   */
  constructor({ deviceId, cursors, changeCursors, onFrame, onStatus }) {
    Object.assign(this, { deviceId, cursors, changeCursors, onFrame, onStatus });
    this.ws = null;
    this.attempts = 0;
    this.timer = null;
    this.stopped = false;
    this.status = "offline";
  }

  start() {
    this.stopped = false;
    this.connect();
    addEventListener("online", this.retryNow);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    removeEventListener("online", this.retryNow);
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
  }

  retryNow = () => {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.timer);
    this.connect();
  };

  setStatus(status, info) {
    this.status = status;
    this.onStatus(status, info);
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const q = new URLSearchParams({ device_id: this.deviceId });
    const ws = new WebSocket(`${scheme}://${location.host}/v1/ws?${q}`);
    this.ws = ws;
    this.setStatus("connecting");
    let greeted = false;
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "hello") {
        greeted = true;
        this.attempts = 0;
        this.setStatus("syncing");
        ws.send(JSON.stringify({ type: "sync", cursors: this.cursors(), change_cursors: this.changeCursors() }));
      }
      this.onFrame(frame);
      if (frame.type === "synced") this.setStatus("online");
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (event.code === CLOSE_REPLACED) {
        // Another tab or window took this device over: reconnecting would take it back, and
        // the two would replace each other for ever.
        this.stopped = true;
        this.setStatus("offline", { replaced: true, greeted });
        return;
      }
      const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempts) * (0.5 + Math.random() / 2);
      this.attempts += 1;
      this.setStatus("offline", { retryInMs: delay, greeted });
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  /** Send a frame if the socket is open and synced; false otherwise (the caller keeps it). */
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.status === "connecting") return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** For tests and "go offline": drop the connection as a network loss would. */
  drop() {
    if (this.ws) this.ws.close(4000, "dropped");
  }
}
