// What the signed-in user does to messages and people beyond sending (protocol 1.1): edit,
// delete and react frames answered by `changed` or a refusal, mute, block and unblock.

import { newId } from "./api.js";

export class Actions {
  constructor(app) {
    this.app = app;
    this.pending = new Map(); // id of an edit, delete or react frame -> the frame, until answered
  }

  async loadBlocked() {
    try {
      this.app.state.blocked = new Set(await this.app.api.blocked());
      this.app.changed("list");
    } catch (err) {
      if (err.status !== 404) console.warn("blocked users", err); // 404: a server without blocking
    }
  }

  /** An edit, delete or react frame; the server answers `changed` (or `error` with our id as
   * `ref`) and every device, this one too, gets `message_updated`. */
  change(frame) {
    const id = newId();
    this.pending.set(id, frame);
    if (!this.app.send({ ...frame, id })) {
      this.pending.delete(id);
      this.app.chat.error("You are offline: try again once connected.");
    }
  }

  react(m, emoji, on) {
    this.change({ type: "react", conversation_id: m.conversation_id, seq: m.seq, emoji, on });
  }

  changed(f) {
    this.pending.delete(f.id);
  }

  /** An error frame answering one of our changes: say so; false if it answers something else. */
  refused(f) {
    const frame = this.pending.get(f.ref);
    if (!frame) return false;
    this.pending.delete(f.ref);
    const what = { edit: "edit", delete: "delete", react: "react to" }[frame.type];
    this.app.chat.error(`Could not ${what} the message: ${f.message || f.code}`);
    return true;
  }

  async setMute(id, mutedUntil) {
    try {
      const answer = await this.app.api.mute(id, mutedUntil);
      const c = this.app.state.conversations.get(id);
      if (c) c.muted_until = answer.muted_until;
      this.app.changed("list", id);
    } catch (err) {
      this.app.chat.error(err.status === 404 ? "Muting is not available on this server yet." : `Could not change muting: ${err.message}`);
    }
  }

  async setBlocked(user, on) {
    try {
      await this.app.api.block(user, on);
      if (on) this.app.state.blocked.add(user);
      else this.app.state.blocked.delete(user);
      this.app.changed("list");
    } catch (err) {
      this.app.chat.error(err.status === 404 ? "Blocking is not available on this server yet." : `Could not ${on ? "block" : "unblock"}: ${err.message}`);
    }
  }
}
