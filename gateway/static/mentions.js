// "@" completion of the open conversation's members in the composer: a mention is the explicit
// list of user ids sent with the message, never parsed out of the body by the server.

import { $, el } from "./ui.js";

const MAX_OPTIONS = 8;

export class Mentions {
  constructor(chat) {
    this.chat = chat;
    this.input = chat.input;
    this.list = $("#mention-list");
    this.picked = new Map(); // "@label" -> user id
    this.options = [];
    this.active = 0;
    this.at = -1;
    this.input.addEventListener("input", () => this.update());
    this.input.addEventListener("blur", () => setTimeout(() => this.hide(), 150));
  }

  get state() { return this.chat.state; }

  members() {
    const c = this.state.conversations.get(this.chat.id);
    return (c?.members || []).map((m) => m.user_id).filter((u) => u !== this.state.me);
  }

  update() {
    const caret = this.input.selectionStart;
    const match = /(^|\s)@([^\s@]*)$/u.exec(this.input.value.slice(0, caret));
    if (!match) return this.hide();
    this.at = caret - match[2].length - 1;
    const q = match[2].toLowerCase();
    this.options = this.members().filter((u) => {
      const name = this.state.name(u).toLowerCase();
      return u.toLowerCase().startsWith(q) || name.startsWith(q) || name.includes(` ${q}`);
    }).slice(0, MAX_OPTIONS);
    if (!this.options.length) return this.hide();
    this.active = Math.min(this.active, this.options.length - 1);
    this.render();
  }

  render() {
    this.list.replaceChildren(...this.options.map((u, i) => el(`li.option${i === this.active ? ".active" : ""}`, {
      role: "option", "data-user": u, "aria-selected": String(i === this.active),
      onmousedown: (e) => { e.preventDefault(); this.pick(u); },
    }, this.chat.app.people.avatar(u), el("span.option-name", {}, this.state.name(u)), el("span.option-id", {}, u))));
    this.list.hidden = false;
    const above = $("#reply-preview").hidden ? $("#composer") : $("#reply-preview"); // both in #chat-pane
    this.list.style.bottom = `${above.offsetParent.clientHeight - above.offsetTop + 6}px`;
  }

  hide() {
    this.list.hidden = true;
    this.options = [];
    this.active = 0;
  }

  /** Keys while the list is open; true if the key was used here. */
  key(e) {
    if (this.list.hidden || !this.options.length) return false;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      this.active = (this.active + (e.key === "ArrowDown" ? 1 : -1) + this.options.length) % this.options.length;
      this.render();
    } else if (e.key === "Enter" || e.key === "Tab") {
      this.pick(this.options[this.active]);
    } else if (e.key === "Escape") {
      this.hide();
    } else {
      return false;
    }
    e.preventDefault();
    return true;
  }

  pick(user) {
    const label = `@${this.state.name(user)}`;
    const v = this.input.value;
    const caret = this.input.selectionStart;
    this.input.value = `${v.slice(0, this.at)}${label} ${v.slice(caret)}`;
    const at = this.at + label.length + 1;
    this.input.setSelectionRange(at, at);
    this.picked.set(label, user);
    this.hide();
    this.input.focus();
  }

  /** The user ids a body mentions: picked from the list, or typed as "@user_id". */
  of(body) {
    const ids = new Set();
    for (const [label, user] of this.picked) if (body.includes(label)) ids.add(user);
    for (const u of this.members()) if (new RegExp(`(^|\\s)@${u.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?![\\p{L}\\p{N}_-])`, "u").test(body)) ids.add(u);
    return [...ids];
  }

  reset() {
    this.picked.clear();
    this.hide();
  }
}
