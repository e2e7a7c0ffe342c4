// The open conversation: header (presence, typing), history with infinite scroll upward,
// ticks on my messages, and the composer (text, image attachment, typing frames).

import { newId } from "./api.js";
import { peerOf, title } from "./state.js";
import { $, avatar, clock, el, lastSeen, typingText } from "./ui.js";

const PAGE = 30;
const TYPING_REFRESH_MS = 3000;
const NEAR_BOTTOM_PX = 120;

export class ChatView {
  constructor(app) {
    this.app = app;
    this.id = null;
    this.loadingOlder = false;
    this.media = new Map(); // media_id -> object URL promise
    this.attachment = null; // File
    this.typingSentAt = 0;
    this.typingIn = null;
    this.scroller = $("#messages");
    this.list = $("#message-list");
    this.input = $("#message-input");
    this.scroller.addEventListener("scroll", () => this.onScroll());
    $("#composer").addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.input.addEventListener("input", () => this.onInput());
    this.input.addEventListener("blur", () => this.stopTyping());
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.submit(); }
    });
    $("#attach-input").addEventListener("change", (e) => this.attach(e.target.files[0]));
    $("#back").addEventListener("click", () => this.app.close());
  }

  get state() { return this.app.state; }

  async open(id) {
    if (this.id && this.id !== id) this.stopTyping();
    this.id = id;
    this.clearAttachment();
    this.error("");
    this.input.value = "";
    this.renderHeader();
    this.render({ toBottom: true });
    const t = this.state.thread(id);
    try {
      const [page, receipts] = await Promise.all([
        t.loaded ? null : this.app.api.messages(id, { limit: PAGE }),
        this.app.api.receipts(id),
      ]);
      if (this.id !== id) return;
      if (page) this.state.addPage(id, page);
      this.state.setReceipts(id, receipts);
    } catch (err) {
      this.error(`Could not load the conversation: ${err.message}`);
    }
    this.render({ toBottom: true });
    this.app.markRead(id);
    this.fill();
  }

  close() {
    this.stopTyping();
    this.id = null;
  }

  /** Load older pages until the view can scroll (or there is nothing older). */
  async fill() {
    while (this.id && this.state.thread(this.id).hasMore && this.scroller.scrollHeight <= this.scroller.clientHeight) {
      if (!(await this.loadOlder())) break;
    }
  }

  onScroll() {
    if (this.scroller.scrollTop < 80) this.loadOlder();
  }

  async loadOlder() {
    const id = this.id;
    const t = id && this.state.thread(id);
    if (!t || !t.hasMore || this.loadingOlder) return false;
    this.loadingOlder = true;
    this.renderTop();
    try {
      const oldest = this.state.oldestSeq(id);
      const page = await this.app.api.messages(id, { beforeSeq: oldest || undefined, limit: PAGE });
      if (this.id !== id) return false;
      const before = this.scroller.scrollHeight - this.scroller.scrollTop;
      this.state.addPage(id, page);
      this.render();
      this.scroller.scrollTop = this.scroller.scrollHeight - before; // keep what the reader was looking at
      return page.messages.length > 0;
    } catch (err) {
      this.error(`Could not load older messages: ${err.message}`);
      return false;
    } finally {
      this.loadingOlder = false;
      this.renderTop();
    }
  }

  update(what, key) {
    if (!this.id) return;
    if (what === "messages" && key === this.id) {
      const near = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < NEAR_BOTTOM_PX;
      this.render({ toBottom: near });
    } else if (what === "receipts" && key === this.id) {
      this.render();
    } else if (what === "typing" && key === this.id) {
      this.renderTyping();
    } else if (what === "presence" || what === "list") {
      this.renderHeader();
    }
  }

  renderHeader() {
    const c = this.state.conversations.get(this.id);
    if (!c) return;
    const peer = peerOf(c, this.state.me);
    const presence = peer ? this.state.presence.get(peer) : null;
    $("#chat-avatar").replaceChildren(avatar(title(c, this.state.me), { group: c.type === "group", presence: presence?.status }));
    $("#chat-title").textContent = title(c, this.state.me);
    let sub;
    if (peer) {
      sub = lastSeen(presence);
    } else {
      const others = c.members.filter((m) => m.user_id !== this.state.me).map((m) => m.user_id);
      const online = others.filter((u) => this.state.presence.get(u)?.status === "online").length;
      sub = `${c.members.length} members${online ? `, ${online} online` : ""}`;
    }
    $("#chat-subtitle").textContent = sub;
    this.renderTyping();
  }

  renderTyping() {
    const users = this.state.typists(this.id);
    const text = typingText(users);
    const node = $("#typing");
    node.textContent = text;
    node.classList.toggle("on", !!text);
  }

  renderTop() {
    const t = this.id && this.state.thread(this.id);
    const top = $("#history-status");
    top.textContent = !t ? "" : this.loadingOlder ? "Loading older messages…" : t.loaded && !t.hasMore ? "Beginning of the conversation" : "";
  }

  render({ toBottom = false } = {}) {
    if (!this.id) return;
    const c = this.state.conversations.get(this.id);
    const group = c?.type === "group";
    const msgs = this.state.messages(this.id);
    const lastMine = [...msgs].reverse().find((m) => m.sender_id === this.state.me && m.seq);
    let prev = null;
    const items = msgs.map((m) => {
      const node = this.message(m, { group, showSender: group && prev?.sender_id !== m.sender_id, last: m === lastMine });
      prev = m;
      return node;
    });
    this.list.replaceChildren(...items);
    this.renderTop();
    $("#chat-empty").hidden = msgs.length > 0 || !this.state.thread(this.id).loaded;
    if (toBottom) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  message(m, { group, showSender, last }) {
    const mine = m.sender_id === this.state.me;
    let status = null;
    let tick = null;
    let readBy = null;
    if (mine && m.failed) {
      status = "failed";
      tick = el("span.tick.failed", { title: m.failed }, "!");
    } else if (mine && !m.seq) {
      status = "pending";
      tick = el("span.tick.pending", { title: "Sending" }, "◷");
    } else if (mine) {
      const t = this.state.tick(this.id, m.seq);
      status = t.status;
      tick = el(`span.tick.${t.status}`, { title: `${t.status}; read by ${t.readBy} of ${t.of}` }, t.status === "sent" ? "✓" : "✓✓");
      if (group && last && t.readBy) readBy = el("div.readby", {}, `Read by ${t.readBy} of ${t.of}`);
    }
    const body = m.body ? el("div.body", {}, m.body) : null;
    return el(`li.msg${mine ? ".mine" : ""}`, { "data-seq": m.seq ?? null, "data-status": status, "data-sender": m.sender_id },
      el("div.bubble", {},
        showSender && !mine ? el("div.sender", {}, m.sender_id) : null,
        m.media || m.localPreview ? this.image(m) : null,
        body,
        el("div.meta", {}, el("time", {}, clock(m.sent_at)), tick)),
      readBy,
      m.failed ? el("div.failure", {}, `Not sent: ${m.failed} `,
        el("button.link", { type: "button", onclick: () => this.app.resend(m) }, "Retry")) : null);
  }

  image(m) {
    const img = el("img.media", { alt: "image", loading: "lazy" });
    if (m.localPreview) {
      img.src = m.localPreview;
    } else {
      if (!this.media.has(m.media.media_id)) this.media.set(m.media.media_id, this.app.api.mediaUrl(m.media.url));
      this.media.get(m.media.media_id).then((src) => { img.src = src; }, () => { img.alt = "image unavailable"; });
    }
    return img;
  }

  // ---- composer ----

  onInput() {
    if (!this.id) return;
    if (this.input.value.trim()) {
      if (Date.now() - this.typingSentAt > TYPING_REFRESH_MS || this.typingIn !== this.id) {
        this.typingSentAt = Date.now();
        this.typingIn = this.id;
        this.app.send({ type: "typing", conversation_id: this.id, typing: true });
      }
    } else {
      this.stopTyping();
    }
  }

  stopTyping() {
    if (!this.typingIn) return;
    this.app.send({ type: "typing", conversation_id: this.typingIn, typing: false });
    this.typingIn = null;
    this.typingSentAt = 0;
  }

  attach(file) {
    $("#attach-input").value = "";
    if (!file) return;
    if (!file.type.startsWith("image/")) {
      this.error("Only images can be attached.");
      return;
    }
    this.clearAttachment();
    this.attachment = file;
    const url = URL.createObjectURL(file);
    $("#attachment").replaceChildren(el("img", { src: url, alt: file.name }), el("span", {}, file.name),
      el("button.link", { type: "button", title: "Remove", onclick: () => this.clearAttachment() }, "✕"));
    $("#attachment").hidden = false;
    this.error("");
  }

  clearAttachment() {
    this.attachment = null;
    $("#attachment").replaceChildren();
    $("#attachment").hidden = true;
  }

  error(text) {
    $("#composer-error").textContent = text;
    $("#composer-error").hidden = !text;
  }

  async submit() {
    const id = this.id;
    const body = this.input.value.trim();
    const file = this.attachment;
    if (!id || (!body && !file)) return;
    this.stopTyping();
    let media = null;
    if (file) {
      try {
        media = await this.app.api.uploadMedia(file);
      } catch (err) {
        const missing = err.status === 404 || err.status === 405;
        this.error(missing ? `Image upload is not available on this server yet (HTTP ${err.status}).`
                           : `Image upload failed: ${err.message}`);
        return;
      }
    }
    this.input.value = "";
    this.clearAttachment();
    this.error("");
    const msg = { conversation_id: id, client_msg_id: newId(), sender_id: this.state.me, body,
                  media, localPreview: file ? URL.createObjectURL(file) : null, sent_at: Date.now() };
    this.app.sendMessage(msg);
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}
