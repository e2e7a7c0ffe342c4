// The message menu (hover button, right click or long press on a message): a row of quick
// reactions with a full emoji picker behind "+", then Reply, Edit and Delete as allowed.

import { $, el } from "./ui.js";

export const QUICK = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
export const EMOJI = [
  "👍", "👎", "❤️", "🔥", "🎉", "😂", "🤣", "😊", "😍", "😘", "😎", "🤔", "😮", "😢", "😭", "😡",
  "🙏", "👏", "🙌", "💪", "👌", "✌️", "🤝", "👀", "✅", "❌", "⭐", "💯", "☕", "🍕", "🎂", "🚀",
];
const EDIT_WINDOW_MS = 48 * 3600 * 1000; // PROTOCOL.md's default; the server has the last word
const LONG_PRESS_MS = 500;

export class MessageMenu {
  constructor(chat) {
    this.chat = chat;
    this.node = $("#msg-menu");
    this.target = null;
    document.addEventListener("pointerdown", (e) => { if (!this.node.hidden && !this.node.contains(e.target)) this.close(); });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") this.close(); });
    chat.scroller.addEventListener("scroll", () => this.close());
  }

  /** What the signed-in user may do to a message. */
  allowed(m) {
    const state = this.chat.state;
    const c = state.conversations.get(m.conversation_id);
    const mine = m.sender_id === state.me;
    const admin = c?.type === "group" && c.members.some((x) => x.user_id === state.me && x.role === "admin");
    const live = !!m.seq && !m.deleted;
    return { reply: live, react: live, edit: live && mine && Date.now() - m.sent_at < EDIT_WINDOW_MS,
             delete: live && (mine || admin) };
  }

  /** Hover button, right click and long press on a message node open the menu. */
  attach(node, m) {
    if (!m.seq || m.deleted) return;
    let timer = null;
    node.addEventListener("contextmenu", (e) => { e.preventDefault(); this.open(m, e.clientX, e.clientY); });
    node.addEventListener("pointerdown", (e) => {
      if (e.pointerType !== "touch") return;
      timer = setTimeout(() => { const r = node.getBoundingClientRect(); this.open(m, r.left + 40, r.top); }, LONG_PRESS_MS);
    });
    for (const ev of ["pointerup", "pointercancel", "pointermove"]) node.addEventListener(ev, () => clearTimeout(timer));
  }

  button(m) {
    return el("button.msg-menu-btn", { type: "button", title: "Message options", "aria-label": "Message options",
      onclick: (e) => { e.stopPropagation(); const r = e.currentTarget.getBoundingClientRect(); this.open(m, r.right, r.bottom); } }, "⌄");
  }

  open(m, x, y, { full = false } = {}) {
    const can = this.allowed(m);
    this.target = m;
    const mine = new Set((m.reactions || []).filter((r) => r.user_ids.includes(this.chat.state.me)).map((r) => r.emoji));
    const chip = (emoji) => el(`button.emoji${mine.has(emoji) ? ".on" : ""}`, { type: "button", title: emoji, "data-emoji": emoji,
      onclick: () => { this.close(); this.chat.app.actions.react(m, emoji, !mine.has(emoji)); } }, emoji);
    const item = (label, action, cls = "") => el(`button.item${cls}`, { type: "button", role: "menuitem", "data-action": label.toLowerCase(),
      onclick: () => { this.close(); action(); } }, label);
    this.node.replaceChildren(...[
      can.react ? el("div.quick", {}, ...QUICK.map(chip),
        el("button.emoji.more", { type: "button", title: "More reactions", "aria-label": "More reactions",
          onclick: () => this.open(m, x, y, { full: !full }) }, full ? "−" : "+")) : null,
      can.react && full ? el("div.picker", {}, ...EMOJI.map(chip)) : null,
      can.reply ? item("Reply", () => this.chat.startReply(m)) : null,
      can.react ? item("React", () => this.open(m, x, y, { full: true })) : null,
      can.edit ? item("Edit", () => this.chat.startEdit(m)) : null,
      can.delete ? item("Delete", () => this.chat.confirmDelete(m), ".danger") : null].filter(Boolean));
    this.node.hidden = false;
    const w = this.node.offsetWidth;
    const h = this.node.offsetHeight;
    const left = m.sender_id === this.chat.state.me ? x - w : x - 34; // open into the empty side
    this.node.style.left = `${Math.max(8, Math.min(left, innerWidth - w - 8))}px`;
    this.node.style.top = `${Math.max(8, Math.min(y, innerHeight - h - 8))}px`;
  }

  close() {
    this.node.hidden = true;
    this.target = null;
  }
}
