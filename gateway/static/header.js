// The open conversation's options: mute (PUT …/settings) for any chat, block and unblock
// (PUT/DELETE /v1/users/me/blocked/{id}) the peer of a direct chat, and the banner shown while
// the peer is blocked.

import { peerOf, isMuted } from "./state.js";
import { $, el } from "./ui.js";

const EIGHT_HOURS_MS = 8 * 3600 * 1000;

export class ChatHeader {
  constructor(chat) {
    this.chat = chat;
    this.menu = $("#chat-menu");
    $("#chat-more").addEventListener("click", (e) => { e.stopPropagation(); this.menu.hidden ? this.open() : this.close(); });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") this.close(); });
    document.addEventListener("pointerdown", (e) => {
      if (!this.menu.hidden && !this.menu.contains(e.target) && !$("#chat-more").contains(e.target)) this.close();
    });
  }

  get app() { return this.chat.app; }

  conversation() {
    return this.app.state.conversations.get(this.chat.id);
  }

  open() {
    const c = this.conversation();
    if (!c) return;
    const peer = peerOf(c, this.app.state.me);
    const item = (label, action, cls = "") => el(`li.item${cls}`, { role: "menuitem", tabindex: "0",
      onclick: () => { this.close(); action(); } }, label);
    const muted = isMuted(c);
    this.menu.replaceChildren(...[
      muted ? item("Unmute notifications", () => this.app.actions.setMute(c.conversation_id, null)) : null,
      muted ? null : item("Mute for 8 hours", () => this.app.actions.setMute(c.conversation_id, Date.now() + EIGHT_HOURS_MS)),
      muted ? null : item("Mute until I unmute", () => this.app.actions.setMute(c.conversation_id, -1)),
      peer ? (this.app.state.blocked.has(peer)
        ? item(`Unblock ${this.app.state.name(peer)}`, () => this.app.actions.setBlocked(peer, false))
        : item(`Block ${this.app.state.name(peer)}`, () => this.app.actions.setBlocked(peer, true), ".danger")) : null].filter(Boolean));
    this.menu.hidden = false;
  }

  close() {
    this.menu.hidden = true;
  }

  /** The muted icon, and the blocked banner in place of the composer. */
  render() {
    const c = this.conversation();
    if (!c) return;
    const muted = isMuted(c);
    $("#chat-muted").hidden = !muted;
    $("#chat-muted").title = c.muted_until === -1 ? "Muted until you unmute" : muted ? `Muted until ${new Date(c.muted_until).toLocaleString()}` : "";
    const peer = peerOf(c, this.app.state.me);
    const blocked = !!peer && this.app.state.blocked.has(peer);
    $("#composer").hidden = blocked;
    const banner = $("#blocked-banner");
    banner.hidden = !blocked;
    banner.replaceChildren(...(blocked ? [el("span", {}, `You blocked ${this.app.state.name(peer)}.`),
      el("button.link", { type: "button", onclick: () => this.app.actions.setBlocked(peer, false) }, "Unblock")] : []));
  }
}
