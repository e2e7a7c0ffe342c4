// The web client: sign-in, the conversation list, new chats, and the wiring between the
// socket (frames of ../shared/PROTOCOL.md), the model (state.js) and the views.

import { Actions } from "./actions.js";
import { Api, deviceId, newId, store } from "./api.js";
import { ChatView } from "./chat.js";
import { renderList } from "./list.js";
import { People } from "./profiles.js";
import { Search } from "./search.js";
import { Socket } from "./socket.js";
import { State } from "./state.js";
import { $ } from "./ui.js";

class App {
  constructor(me) {
    this.me = me;
    this.deviceId = deviceId();
    this.api = new Api(() => this.signOut());
    this.state = new State(me, this.deviceId, (what, key) => this.changed(what, key));
    this.people = new People(this);
    this.chat = new ChatView(this);
    this.search = new Search(this);
    this.actions = new Actions(this);
    this.deliveredSent = new Map();
    this.readSent = new Map();
    this.timers = new Map();
    this.socket = new Socket({
      deviceId: this.deviceId, cursors: () => ({ ...this.state.cursors }),
      changeCursors: () => ({ ...this.state.changeCursors }),
      onFrame: (f) => this.frame(f), onStatus: (s, info) => this.status(s, info),
    });
  }

  async start() {
    this.people.renderMe();
    show("main");
    try {
      this.state.setConversations(await this.api.conversations());
    } catch (err) {
      console.warn("conversation list", err);
    }
    this.people.load([this.me, ...this.state.memberIds()]);
    this.actions.loadBlocked();
    this.loadPresence(this.state.memberIds());
    this.socket.start();
    document.addEventListener("visibilitychange", () => this.chat.id && this.markRead(this.chat.id));
  }

  async loadPresence(userIds) {
    for (let i = 0; i < userIds.length; i += 100) {
      try {
        const answer = await this.api.presence(userIds.slice(i, i + 100));
        for (const [user, p] of Object.entries(answer || {})) this.state.setPresence(user, p);
      } catch (err) {
        if (err.status === 404) return; // a server without presence: no dots
      }
    }
  }

  frame(f) {
    switch (f.type) {
      case "message_updated": this.state.applyChange(f); break;
      case "changed": this.actions.changed(f); break;
      case "profile": this.state.setProfile(f.profile); break;
      case "message": {
        const m = f.message;
        const open = this.isVisible(m.conversation_id);
        if (this.state.addMessage(m, { live: true, isOpen: open }) && m.sender_id !== this.me) {
          this.later(`delivered:${m.conversation_id}`, () => this.markDelivered(m.conversation_id));
          if (open) this.later(`read:${m.conversation_id}`, () => this.markRead(m.conversation_id));
        }
        break;
      }
      case "ack": this.state.ack(f); break;
      case "receipt": this.state.receipt(f); break;
      case "typing": // an indicator expires after ttl_ms without a refresh: re-render then
        this.state.typingFrame(f);
        this.later(`typing:${f.conversation_id}`, () => this.changed("typing", f.conversation_id), (f.ttl_ms || 10000) + 50);
        break;
      case "presence": this.state.setPresence(f.user_id, f); break;
      case "conversation": this.conversation(f.conversation); break;
      case "synced": this.synced(f); break;
      case "error":
        if (f.ref && this.actions.refused(f)) break;
        if (f.ref) this.state.failPending(f.ref, f.message || f.code);
        else console.warn("server error", f);
        break;
      default: break;
    }
  }

  conversation(c) {
    const known = this.state.conversations.get(c.conversation_id);
    const before = new Set(this.state.memberIds());
    this.state.upsertConversation(c);
    if (!this.state.conversations.has(c.conversation_id) && this.chat.id === c.conversation_id) this.close();
    const added = c.members.map((m) => m.user_id).filter((u) => u !== this.me && !before.has(u));
    if (added.length) {
      this.loadPresence(added);
      this.people.load(added);
    }
    if (!known && this.chat.id === c.conversation_id) this.chat.renderHeader();
  }

  /** After each (re)connect's replay: resend what was never acked, catch up the list, send receipts. */
  async synced(f) {
    this.state.syncedChanges(f.change_cursors);
    for (const m of this.state.allPending()) this.socket.send(sendFrame(m));
    try {
      const list = await this.api.conversations();
      this.state.setConversations(list);
      for (const c of list) {
        if (c.last_message && c.last_message.sender_id !== this.me) this.markDelivered(c.conversation_id);
      }
    } catch (err) {
      console.warn("conversation list", err);
    }
    if (this.chat.id) this.markRead(this.chat.id);
  }

  send(frame) {
    return this.socket.send(frame);
  }

  /** Open a conversation at one message (a search result). */
  async openAt(id, seq) {
    if (this.chat.id !== id) this.open(id);
    await this.chat.ready;
    await this.chat.jumpTo(seq);
  }

  sendMessage(msg) {
    this.state.addPending(msg);
    this.socket.send(sendFrame(msg)); // if offline, sent again after the next sync
  }

  resend(msg) {
    msg.failed = null;
    this.state.addPending(msg);
    this.socket.send(sendFrame(msg));
  }

  markDelivered(id) {
    const seq = Math.max(this.state.cursors[id] || 0, this.state.newestSeq(id));
    if (seq > (this.deliveredSent.get(id) || 0) && this.send({ type: "receipt", conversation_id: id, seq, status: "delivered" })) {
      this.deliveredSent.set(id, seq);
    }
  }

  markRead(id) {
    if (!this.isVisible(id)) return;
    const c = this.state.conversations.get(id);
    const seq = Math.max(this.state.newestSeq(id), c?.last_seq || 0);
    if (seq > (this.readSent.get(id) || 0)) {
      if (this.send({ type: "receipt", conversation_id: id, seq, status: "read" })) {
        this.readSent.set(id, seq);
        this.deliveredSent.set(id, Math.max(seq, this.deliveredSent.get(id) || 0));
      }
    }
    if (c && (c.unread || c.unread_mentions)) {
      c.unread = 0;
      c.unread_mentions = 0;
      this.renderList();
    }
  }

  isVisible(id) {
    return this.chat.id === id && document.visibilityState === "visible";
  }

  /** Run fn once after ms, coalescing calls with the same key. */
  later(key, fn, ms = 120) {
    clearTimeout(this.timers.get(key));
    this.timers.set(key, setTimeout(() => { this.timers.delete(key); fn(); }, ms));
  }

  changed(what, key) {
    if (what !== "messages" && what !== "receipts") this.later("list", () => this.renderList(), 16);
    if (what === "profile" && key === this.me) this.people.renderMe();
    this.chat.update(what, key);
  }

  status(status, info) {
    const banner = $("#connection");
    document.body.dataset.connection = status;
    const text = { connecting: "Connecting…", syncing: "Syncing…", online: "",
                   offline: info?.replaced ? "Open in another tab or window: reload to use it here."
                     : `Offline. Reconnecting in ${Math.ceil((info?.retryInMs || 0) / 1000)} s…` }[status];
    banner.textContent = text;
    banner.hidden = !text;
    if (status === "offline" && !info?.greeted) this.api.conversations().catch(() => {}); // a 401 signs out
  }

  renderList() {
    renderList(this);
  }

  open(id) {
    document.body.classList.add("show-chat");
    $("#chat-pane").hidden = false;
    $("#chat-placeholder").hidden = true;
    this.chat.open(id);
    this.renderList();
  }

  close() {
    this.chat.close();
    document.body.classList.remove("show-chat");
    $("#chat-pane").hidden = true;
    $("#chat-placeholder").hidden = false;
    this.renderList();
  }

  async create(form) {
    const data = new FormData(form);
    const error = $("#new-error");
    error.textContent = "";
    // One idempotency key per conversation asked for: Create clicked again after an error sends
    // the same key (the first attempt may have made it), a changed form a new one.
    const asked = JSON.stringify([...data.entries()]);
    if (form.dataset.asked !== asked) Object.assign(form.dataset, { asked, key: newId() });
    try {
      let c;
      if (data.get("kind") === "direct") {
        c = await this.api.createDirect(String(data.get("peer")).trim(), form.dataset.key);
      } else {
        const members = String(data.get("members")).split(/[\s,]+/).filter(Boolean);
        c = await this.api.createGroup(String(data.get("name")).trim(), members, form.dataset.key);
      }
      this.conversation(c);
      $("#new-dialog").close();
      delete form.dataset.asked;
      delete form.dataset.key;
      form.reset();
      form.dataset.kind = "direct";
      this.open(c.conversation_id);
    } catch (err) {
      error.textContent = err.message;
    }
  }

  async signOut() {
    this.socket.stop();
    await Api.signOut();
    location.reload();
  }
}

function sendFrame(m) {
  const frame = { type: "send", conversation_id: m.conversation_id, client_msg_id: m.client_msg_id, body: m.body };
  if (m.media) frame.media_id = m.media.media_id;
  if (m.reply_to) frame.reply_to = m.reply_to.seq;
  if (m.mentions?.length) frame.mentions = m.mentions;
  return frame;
}

function show(screen) {
  $("#signin").hidden = screen !== "signin";
  $("#main").hidden = screen !== "main";
}

async function boot() {
  store.remove("session"); // where clients before the session cookie kept their bearer token
  const user = await Api.currentUser();
  if (user) {
    start(user);
    return;
  }
  show("signin");
  $("#signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#signin-error").textContent = "";
    try {
      start(await Api.signIn($("#signin-user").value.trim()));
    } catch (err) {
      $("#signin-error").textContent = err.message;
    }
  });
}

function start(user) {
  const app = new App(user);
  window.chat = app; // for the console and the browser tests
  $("#sign-out").addEventListener("click", () => app.signOut());
  $("#new-chat").addEventListener("click", () => $("#new-dialog").showModal());
  $("#new-cancel").addEventListener("click", () => $("#new-dialog").close());
  $("#new-form").addEventListener("submit", (e) => { e.preventDefault(); app.create(e.target); });
  for (const radio of document.querySelectorAll("#new-form input[name=kind]")) {
    radio.addEventListener("change", () => { $("#new-form").dataset.kind = radio.value; });
  }
  app.start();
}

boot();
