// The open conversation: header (presence, typing), history with infinite scroll upward and
// jumps to a message, the message menu's actions (reply, inline edit, delete), and the composer
// (text, image attachment, typing frames, mentions, replies).

import { newId } from "./api.js";
import { Mentions, renderReplyPreview } from "./compose.js";
import { ChatHeader } from "./header.js";
import { MessageMenu } from "./menu.js";
import { messageNode } from "./message.js";
import { peerOf, title } from "./state.js";
import { $, el, lastSeen, typingText } from "./ui.js";

const PAGE = 30;
const TYPING_REFRESH_MS = 3000;
const NEAR_BOTTOM_PX = 120;
const JUMP_PAGE = 200;
const FLASH_MS = 2500;

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
    this.replyTo = null; // the message being answered
    this.editing = null; // {seq, node, input} of the inline editor
    this.deleting = null;
    this.flash = null; // {seq, until}: the message a jump landed on
    this.ready = Promise.resolve(); // the open conversation has loaded
    this.menu = new MessageMenu(this);
    this.header = new ChatHeader(this);
    this.mentions = new Mentions(this);
    this.scroller.addEventListener("scroll", () => this.onScroll());
    $("#composer").addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.input.addEventListener("input", () => this.onInput());
    this.input.addEventListener("blur", () => this.stopTyping());
    this.input.addEventListener("keydown", (e) => {
      if (this.mentions.key(e)) return;
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.submit(); }
      if (e.key === "Escape" && this.replyTo) { this.replyTo = null; renderReplyPreview(this); }
    });
    $("#delete-cancel").addEventListener("click", () => $("#delete-dialog").close());
    $("#delete-form").addEventListener("submit", () => {
      const m = this.deleting;
      if (m) this.app.change({ type: "delete", conversation_id: m.conversation_id, seq: m.seq });
      this.deleting = null;
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
    this.replyTo = null;
    this.editing = null;
    this.mentions.reset();
    this.menu.close();
    this.header.close();
    renderReplyPreview(this);
    this.renderHeader();
    this.render({ toBottom: true });
    this.ready = this.load(id);
    return this.ready;
  }

  /** The newest page (once) and the receipts of a conversation being opened. */
  async load(id) {
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

  async loadOlder(limit = PAGE) {
    const id = this.id;
    const t = id && this.state.thread(id);
    if (!t || !t.hasMore || this.loadingOlder) return false;
    this.loadingOlder = true;
    this.renderTop();
    try {
      const oldest = this.state.oldestSeq(id);
      const page = await this.app.api.messages(id, { beforeSeq: oldest || undefined, limit });
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
    } else if (what === "profile") {
      this.renderHeader();
      this.render();
      renderReplyPreview(this);
    }
  }

  /** Show a message: load older pages until it is there, scroll to it and light it up. */
  async jumpTo(seq) {
    const id = this.id;
    while (this.id === id && !this.state.message(id, seq) && this.state.thread(id).hasMore) {
      if (this.loadingOlder) {
        await new Promise((r) => setTimeout(r, 50));
      } else if (!(await this.loadOlder(JUMP_PAGE))) {
        break;
      }
    }
    if (this.id !== id) return;
    this.flash = { seq, until: Date.now() + FLASH_MS };
    this.render();
    const node = this.list.querySelector(`li.msg[data-seq="${seq}"]`);
    if (!node) {
      this.error("That message is no longer available.");
      return;
    }
    node.scrollIntoView({ block: "center" });
    setTimeout(() => this.render(), FLASH_MS + 20);
  }

  // ---- the message menu's actions ----

  startReply(m) {
    this.replyTo = m;
    renderReplyPreview(this);
    this.input.focus();
  }

  startEdit(m) {
    const input = el("textarea.edit-input", { rows: "2", "aria-label": "Edit message" });
    input.value = m.body;
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.saveEdit(); }
      if (e.key === "Escape") { e.stopPropagation(); this.cancelEdit(); }
    });
    const node = el("div.editor", {}, input, el("div.editor-actions", {},
      el("button.link", { type: "button", onclick: () => this.cancelEdit() }, "Cancel"),
      el("button.primary.small.save", { type: "button", onclick: () => this.saveEdit() }, "Save")));
    this.editing = { seq: m.seq, node, input };
    this.render();
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  saveEdit() {
    const e = this.editing;
    if (!e) return;
    const m = this.state.message(this.id, e.seq);
    const body = e.input.value.trim();
    if (!body) return;
    if (m && body !== m.body) this.app.change({ type: "edit", conversation_id: this.id, seq: e.seq, body });
    this.cancelEdit();
  }

  cancelEdit() {
    this.editing = null;
    this.render();
  }

  confirmDelete(m) {
    this.deleting = m;
    $("#delete-dialog").showModal();
  }

  renderHeader() {
    const c = this.state.conversations.get(this.id);
    if (!c) return;
    const peer = peerOf(c, this.state.me);
    const presence = peer ? this.state.presence.get(peer) : null;
    const name = title(c, this.state.me, (u) => this.state.name(u));
    $("#chat-avatar").replaceChildren(peer ? this.app.people.avatar(peer, { presence: presence?.status })
      : this.app.people.avatar(name, { group: true }));
    $("#chat-title").textContent = name;
    let sub;
    if (peer) {
      sub = lastSeen(presence);
    } else {
      const others = c.members.filter((m) => m.user_id !== this.state.me).map((m) => m.user_id);
      const online = others.filter((u) => this.state.presence.get(u)?.status === "online").length;
      sub = `${c.members.length} members${online ? `, ${online} online` : ""}`;
    }
    $("#chat-subtitle").textContent = sub;
    this.header.render();
    this.renderTyping();
  }

  renderTyping() {
    const users = this.state.typists(this.id);
    const text = typingText(users.map((u) => this.state.name(u)));
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
      const node = messageNode(this, m, { group, showSender: group && prev?.sender_id !== m.sender_id, last: m === lastMine });
      prev = m;
      return node;
    });
    const input = this.editing?.input;
    const focus = input && document.activeElement === input ? [input.selectionStart, input.selectionEnd] : null;
    this.list.replaceChildren(...items);
    if (focus) { // the editor moved into the new item: keep the caret where it was
      input.focus();
      input.setSelectionRange(...focus);
    }
    this.renderTop();
    $("#chat-empty").hidden = msgs.length > 0 || !this.state.thread(this.id).loaded;
    if (toBottom) this.scroller.scrollTop = this.scroller.scrollHeight;
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
    const reply = this.replyTo;
    const mentions = this.mentions.of(body);
    this.input.value = "";
    this.clearAttachment();
    this.error("");
    this.replyTo = null;
    this.mentions.reset();
    renderReplyPreview(this);
    const msg = { conversation_id: id, client_msg_id: newId(), sender_id: this.state.me, body,
                  media, localPreview: file ? URL.createObjectURL(file) : null, sent_at: Date.now(),
                  reply_to: reply ? { seq: reply.seq, sender_id: reply.sender_id, body: reply.body.slice(0, 200) } : null,
                  mentions };
    this.app.sendMessage(msg);
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}
