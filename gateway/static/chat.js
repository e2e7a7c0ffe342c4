// The open conversation: header (presence, typing), history with infinite scroll upward and
// jumps to a message, and the message menu's actions (reply, inline edit, delete); the composer
// is composer.js.

import { Composer } from "./composer.js";
import { ChatHeader } from "./header.js";
import { MessageMenu } from "./menu.js";
import { messageNode } from "./message.js";
import { peerOf, title } from "./state.js";
import { $, el, lastSeen, typingText } from "./ui.js";

const PAGE = 30;
const NEAR_BOTTOM_PX = 120;
const JUMP_PAGE = 200;
const FLASH_MS = 2500;

export class ChatView {
  constructor(app) {
    this.app = app;
    this.id = null;
    this.loadingOlder = false;
    this.media = new Map(); // media_id -> object URL promise
    this.scroller = $("#messages");
    this.list = $("#message-list");
    this.input = $("#message-input");
    this.editing = null; // {seq, node, input} of the inline editor
    this.deleting = null;
    this.flash = null; // {seq, until}: the message a jump landed on
    this.ready = Promise.resolve(); // the open conversation has loaded
    this.menu = new MessageMenu(this);
    this.header = new ChatHeader(this);
    this.composer = new Composer(this);
    this.scroller.addEventListener("scroll", () => this.onScroll());
    $("#delete-cancel").addEventListener("click", () => $("#delete-dialog").close());
    $("#delete-form").addEventListener("submit", () => {
      const m = this.deleting;
      if (m) this.app.actions.change({ type: "delete", conversation_id: m.conversation_id, seq: m.seq });
      this.deleting = null;
    });
    $("#back").addEventListener("click", () => this.app.close());
  }

  get state() { return this.app.state; }

  async open(id) {
    if (this.id && this.id !== id) this.composer.stopTyping();
    this.id = id;
    this.error("");
    this.composer.reset();
    this.editing = null;
    this.menu.close();
    this.header.close();
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
    this.composer.stopTyping();
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
      this.composer.renderReply();
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
    this.composer.startReply(m);
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
    if (m && body !== m.body) this.app.actions.change({ type: "edit", conversation_id: this.id, seq: e.seq, body });
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
    // The editor keeps the focus across renders: a render that ran while it was out of the
    // document (focus then falls to <body>) must not leave Enter and Escape going nowhere.
    const input = this.editing?.input;
    const active = document.activeElement;
    const focus = input && (active === input || !active || active === document.body)
      ? [input.selectionStart, input.selectionEnd] : null;
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

  error(text) {
    $("#composer-error").textContent = text;
    $("#composer-error").hidden = !text;
  }


}
