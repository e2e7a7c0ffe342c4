// The client's model: conversations, messages (deduplicated by (conversation_id, seq)),
// pending sends, receipts watermarks, typing and presence, and the 1.1 additions: changes to
// messages (edits, deletions, reactions) with their own per-conversation counter, profiles and
// blocks. No DOM here; the view listens.

import { store } from "./api.js";

export const TYPING_TTL_MS = 10000;

export class State {
  constructor(me, deviceId, onChange) {
    this.me = me;
    this.onChange = onChange; // (what: "list"|"messages"|"receipts"|"typing"|"presence", conversationId?)
    this.cursorKey = `cursors.${me}.${deviceId}`;
    this.cursors = store.get(this.cursorKey, {});
    this.changeKey = `changes.${me}.${deviceId}`;
    this.changeCursors = store.get(this.changeKey, {}); // id -> last change_seq applied
    this.profiles = new Map(); // user -> {user_id, display_name, avatar_url}
    this.blocked = new Set();
    this.conversations = new Map();
    this.threads = new Map(); // id -> {bySeq: Map, pending: Map(client_msg_id -> msg), hasMore, loaded}
    this.receipts = new Map(); // id -> {user: {delivered_seq, read_seq}}
    this.typing = new Map(); // id -> Map(user -> expires at)
    this.presence = new Map(); // user -> {status, last_seen}
  }

  thread(id) {
    let t = this.threads.get(id);
    if (!t) {
      t = { bySeq: new Map(), pending: new Map(), hasMore: true, loaded: false };
      this.threads.set(id, t);
    }
    return t;
  }

  /** The conversation list from the server (authoritative for unread and last message). */
  setConversations(list) {
    this.conversations = new Map(list.map((c) => [c.conversation_id, c]));
    for (const c of list) {
      // A new device starts from what the list shows; sync replays anything newer.
      if (!(c.conversation_id in this.cursors)) this.cursors[c.conversation_id] = c.last_seq || 0;
      if (!(c.conversation_id in this.changeCursors)) this.changeCursors[c.conversation_id] = c.last_change_seq || 0;
    }
    store.set(this.cursorKey, this.cursors);
    store.set(this.changeKey, this.changeCursors);
    this.onChange("list");
  }

  sorted() {
    const at = (c) => c.last_message?.sent_at ?? c.created_at ?? 0;
    return [...this.conversations.values()].sort((a, b) => at(b) - at(a));
  }

  upsertConversation(conversation) {
    const id = conversation.conversation_id;
    const old = this.conversations.get(id);
    if (!conversation.members.some((m) => m.user_id === this.me)) {
      this.conversations.delete(id);
    } else {
      this.conversations.set(id, { last_seq: 0, last_message: null, unread: 0, ...old, ...conversation });
    }
    this.onChange("list", id);
  }

  /** A message from history, sync or live delivery; false if it was already known. */
  addMessage(m, { live = true, isOpen = false } = {}) {
    const t = this.thread(m.conversation_id);
    if (t.bySeq.has(m.seq)) return false;
    t.bySeq.set(m.seq, m);
    if (m.sender_id === this.me) t.pending.delete(m.client_msg_id);
    this.sentReads(m.conversation_id, [m]);
    if (!live) return true;
    if (m.seq > (this.cursors[m.conversation_id] || 0)) {
      this.cursors[m.conversation_id] = m.seq;
      store.set(this.cursorKey, this.cursors);
    }
    this.stopTyping(m.conversation_id, m.sender_id);
    const c = this.conversations.get(m.conversation_id);
    if (c && m.seq > (c.last_seq || 0)) {
      c.last_seq = m.seq;
      c.last_message = m;
      if (m.sender_id !== this.me && !isOpen) {
        c.unread = (c.unread || 0) + 1;
        if ((m.mentions || []).includes(this.me)) c.unread_mentions = (c.unread_mentions || 0) + 1;
      }
    }
    this.onChange("list", m.conversation_id);
    this.onChange("messages", m.conversation_id);
    return true;
  }

  /** A message_updated frame (live or replayed by sync): the message as it is now replaces
   * ours, and the quotes of replies to it follow. Frames at or below the conversation's change
   * cursor were applied already. */
  applyChange(frame) {
    const id = frame.conversation_id;
    if (frame.change_seq <= (this.changeCursors[id] || 0)) return false;
    this.changeCursors[id] = frame.change_seq;
    store.set(this.changeKey, this.changeCursors);
    const m = frame.message;
    const t = this.thread(id);
    if (t.bySeq.has(m.seq)) t.bySeq.set(m.seq, m);
    for (const other of t.bySeq.values()) {
      if (other.reply_to?.seq === m.seq) other.reply_to = { ...other.reply_to, body: m.deleted ? "" : m.body.slice(0, 200) };
    }
    const c = this.conversations.get(id);
    if (c?.last_message?.seq === m.seq) {
      c.last_message = m;
      this.onChange("list", id);
    }
    this.onChange("messages", id);
    return true;
  }

  /** synced.change_cursors: every change up to these has been replayed. */
  syncedChanges(cursors) {
    for (const [id, seq] of Object.entries(cursors || {})) {
      this.changeCursors[id] = Math.max(this.changeCursors[id] || 0, seq);
    }
    store.set(this.changeKey, this.changeCursors);
  }

  message(id, seq) {
    return this.thread(id).bySeq.get(seq);
  }

  setProfile(p) {
    this.profiles.set(p.user_id, p);
    this.onChange("profile", p.user_id);
  }

  /** The name a person sees for a user: their display name, else their id. */
  name(user) {
    return this.profiles.get(user)?.display_name || user;
  }

  /** An older page from GET …/messages, prepended. */
  addPage(id, page) {
    const t = this.thread(id);
    for (const m of page.messages) if (!t.bySeq.has(m.seq)) t.bySeq.set(m.seq, m);
    t.hasMore = page.has_more;
    t.loaded = true;
    this.sentReads(id, page.messages);
  }

  /** Sending a message reads everything before it (the server moves the sender's watermarks
   * without a receipt frame), so a sender's message is their read receipt too. */
  sentReads(id, messages) {
    const marks = {};
    for (const m of messages) {
      if (m.sender_id !== this.me && m.seq > (marks[m.sender_id]?.read_seq || 0)) {
        marks[m.sender_id] = { delivered_seq: m.seq, read_seq: m.seq };
      }
    }
    if (Object.keys(marks).length) this.setReceipts(id, marks);
  }

  messages(id) {
    const t = this.thread(id);
    const sent = [...t.bySeq.values()].sort((a, b) => a.seq - b.seq);
    return sent.concat([...t.pending.values()]);
  }

  oldestSeq(id) {
    let min = Infinity;
    for (const seq of this.thread(id).bySeq.keys()) min = Math.min(min, seq);
    return min === Infinity ? null : min;
  }

  newestSeq(id) {
    let max = 0;
    for (const seq of this.thread(id).bySeq.keys()) max = Math.max(max, seq);
    return max;
  }

  addPending(msg) {
    this.thread(msg.conversation_id).pending.set(msg.client_msg_id, msg);
    this.onChange("messages", msg.conversation_id);
  }

  allPending() {
    return [...this.threads.values()].flatMap((t) => [...t.pending.values()]);
  }

  /** Our ack: the pending message becomes a sent one with its seq. */
  ack(frame) {
    const t = this.thread(frame.conversation_id);
    const p = t.pending.get(frame.client_msg_id);
    if (!p) return;
    t.pending.delete(frame.client_msg_id);
    this.addMessage({ ...p, seq: frame.seq, message_id: frame.message_id, sent_at: frame.sent_at, failed: null,
                      pending: undefined }, { live: true, isOpen: true });
  }

  failPending(clientMsgId, error) {
    for (const t of this.threads.values()) {
      const p = t.pending.get(clientMsgId);
      if (p) {
        p.failed = error;
        this.onChange("messages", p.conversation_id);
      }
    }
  }

  setReceipts(id, members) {
    const marks = this.receipts.get(id) || {};
    for (const [user, w] of Object.entries(members)) {
      const old = marks[user] || { delivered_seq: 0, read_seq: 0 };
      marks[user] = { delivered_seq: Math.max(old.delivered_seq, w.delivered_seq),
                      read_seq: Math.max(old.read_seq, w.read_seq) };
    }
    this.receipts.set(id, marks);
    this.onChange("receipts", id);
  }

  receipt(frame) {
    const { conversation_id: id, user_id: user, seq, status } = frame;
    const w = { delivered_seq: seq, read_seq: status === "read" ? seq : 0 };
    this.setReceipts(id, { [user]: w });
    const c = this.conversations.get(id);
    if (user === this.me && status === "read" && c) {
      c.unread = Math.max(0, Math.min(c.unread || 0, (c.last_seq || 0) - seq));
      if (seq >= (c.last_seq || 0)) c.unread_mentions = 0;
      this.onChange("list", id);
    }
  }

  /** sent | delivered | read for one of my messages, and how many members read it. */
  tick(id, seq) {
    const c = this.conversations.get(id);
    const others = (c?.members || []).map((m) => m.user_id).filter((u) => u !== this.me);
    const marks = this.receipts.get(id) || {};
    const readBy = others.filter((u) => (marks[u]?.read_seq || 0) >= seq).length;
    const deliveredTo = others.filter((u) => Math.max(marks[u]?.delivered_seq || 0, marks[u]?.read_seq || 0) >= seq).length;
    const status = others.length && readBy === others.length ? "read"
      : others.length && deliveredTo === others.length ? "delivered" : "sent";
    return { status, readBy, deliveredTo, of: others.length };
  }

  typingFrame(frame) {
    if (frame.user_id === this.me) return;
    const id = frame.conversation_id;
    if (frame.typing) {
      if (!this.typing.has(id)) this.typing.set(id, new Map());
      this.typing.get(id).set(frame.user_id, Date.now() + (frame.ttl_ms || TYPING_TTL_MS));
      this.onChange("typing", id);
    } else {
      this.stopTyping(id, frame.user_id);
    }
  }

  stopTyping(id, user) {
    if (this.typing.get(id)?.delete(user)) this.onChange("typing", id);
  }

  /** Who is typing now (indicators expire after their ttl without a refresh). */
  typists(id) {
    const now = Date.now();
    const users = this.typing.get(id);
    if (!users) return [];
    for (const [u, until] of users) if (until <= now) users.delete(u);
    return [...users.keys()].sort();
  }

  setPresence(user, p) {
    this.presence.set(user, { status: p.status, last_seen: p.last_seen });
    this.onChange("presence", user);
  }

  memberIds() {
    const ids = new Set();
    for (const c of this.conversations.values()) for (const m of c.members) if (m.user_id !== this.me) ids.add(m.user_id);
    return [...ids].sort();
  }
}

/** The name a person sees: the group's name, or the peer's name in a direct chat. */
export function title(c, me, name = (u) => u) {
  if (c.type === "direct") return name(peerOf(c, me)) || "Direct chat";
  return c.name || c.members.map((m) => m.user_id).filter((u) => u !== me).map(name).join(", ") || "Group";
}

/** Muted now: muted_until is -1 (until unmuted) or a time still to come. */
export function isMuted(c) {
  return c?.muted_until === -1 || (c?.muted_until || 0) > Date.now();
}

export function peerOf(c, me) {
  return c.type === "direct" ? c.members.map((m) => m.user_id).find((u) => u !== me) : null;
}
