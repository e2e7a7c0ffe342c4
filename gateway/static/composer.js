// The composer: text, an image attachment, typing frames, "@" mentions (mentions.js) and the
// quoted preview of the message being answered.

import { newId } from "./api.js";
import { Mentions } from "./mentions.js";
import { quote } from "./message.js";
import { $, el } from "./ui.js";

const TYPING_REFRESH_MS = 3000;

export class Composer {
  constructor(chat) {
    this.chat = chat;
    this.input = chat.input;
    this.attachment = null; // File
    this.typingSentAt = 0;
    this.typingIn = null;
    this.replyTo = null; // the message being answered
    this.mentions = new Mentions(chat);
    $("#composer").addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.input.addEventListener("input", () => this.onInput());
    this.input.addEventListener("blur", () => this.stopTyping());
    this.input.addEventListener("keydown", (e) => {
      if (this.mentions.key(e)) return;
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.submit(); }
      if (e.key === "Escape" && this.replyTo) this.startReply(null);
    });
    $("#attach-input").addEventListener("change", (e) => this.attach(e.target.files[0]));
  }

  /** A conversation was opened: start empty. */
  reset() {
    this.clearAttachment();
    this.input.value = "";
    this.mentions.reset();
    this.startReply(null);
  }

  startReply(m) {
    this.replyTo = m;
    this.renderReply();
    if (m) this.input.focus();
  }

  /** The quoted message above the composer while replying, with a button to cancel. */
  renderReply() {
    const node = $("#reply-preview");
    const r = this.replyTo;
    node.hidden = !r;
    if (!r) return node.replaceChildren();
    const state = this.chat.state;
    node.replaceChildren(
      quote((u) => (u === state.me ? "You" : state.name(u)), { seq: r.seq, sender_id: r.sender_id, body: r.body.slice(0, 200) },
        { title: "Show the message", onclick: () => this.chat.jumpTo(r.seq) }),
      el("button.icon.close", { type: "button", title: "Cancel reply", "aria-label": "Cancel reply",
        onclick: () => this.startReply(null) }, "✕"));
  }

  onInput() {
    if (!this.chat.id) return;
    if (this.input.value.trim()) {
      if (Date.now() - this.typingSentAt > TYPING_REFRESH_MS || this.typingIn !== this.chat.id) {
        this.typingSentAt = Date.now();
        this.typingIn = this.chat.id;
        this.chat.app.send({ type: "typing", conversation_id: this.chat.id, typing: true });
      }
    } else {
      this.stopTyping();
    }
  }

  stopTyping() {
    if (!this.typingIn) return;
    this.chat.app.send({ type: "typing", conversation_id: this.typingIn, typing: false });
    this.typingIn = null;
    this.typingSentAt = 0;
  }

  attach(file) {
    $("#attach-input").value = "";
    if (!file) return;
    if (!file.type.startsWith("image/")) {
      this.chat.error("Only images can be attached.");
      return;
    }
    this.clearAttachment();
    this.attachment = file;
    const url = URL.createObjectURL(file);
    $("#attachment").replaceChildren(el("img", { src: url, alt: file.name }), el("span", {}, file.name),
      el("button.link", { type: "button", title: "Remove", onclick: () => this.clearAttachment() }, "✕"));
    $("#attachment").hidden = false;
    this.chat.error("");
  }

  clearAttachment() {
    this.attachment = null;
    $("#attachment").replaceChildren();
    $("#attachment").hidden = true;
  }

  async submit() {
    const id = this.chat.id;
    const body = this.input.value.trim();
    const file = this.attachment;
    if (!id || (!body && !file)) return;
    this.stopTyping();
    let media = null;
    if (file) {
      try {
        media = await this.chat.app.api.uploadMedia(file);
      } catch (err) {
        const missing = err.status === 404 || err.status === 405;
        this.chat.error(missing ? `Image upload is not available on this server yet (HTTP ${err.status}).`
                                : `Image upload failed: ${err.message}`);
        return;
      }
    }
    const reply = this.replyTo;
    const mentions = this.mentions.of(body);
    this.input.value = "";
    this.clearAttachment();
    this.chat.error("");
    this.replyTo = null;
    this.mentions.reset();
    this.renderReply();
    const msg = { conversation_id: id, client_msg_id: newId(), sender_id: this.chat.state.me, body,
                  media, localPreview: file ? URL.createObjectURL(file) : null, sent_at: Date.now(),
                  reply_to: reply ? { seq: reply.seq, sender_id: reply.sender_id, body: reply.body.slice(0, 200) } : null,
                  mentions };
    this.chat.app.sendMessage(msg);
    this.chat.scroller.scrollTop = this.chat.scroller.scrollHeight;
  }
}
