// One message of the open conversation as a list item: sender, reply quote, image, body with
// mentions marked (text nodes only, never HTML), "edited", ticks, reactions, or a tombstone.

import { clock, el, marked, mentionRanges } from "./ui.js";

/** A quoted message: who wrote it and the start of its text (or that it was deleted). */
export function quote(name, reply, attrs = {}) {
  return el("div.quote", { "data-seq": reply.seq, ...attrs },
    el("div.quote-sender", {}, name(reply.sender_id)),
    el("div.quote-body", {}, reply.body || "message deleted"));
}

function tick(view, m, { group, last }) {
  const mine = m.sender_id === view.state.me;
  if (!mine) return {};
  if (m.failed) return { status: "failed", tick: el("span.tick.failed", { title: m.failed }, "!") };
  if (!m.seq) return { status: "pending", tick: el("span.tick.pending", { title: "Sending" }, "◷") };
  const t = view.state.tick(view.id, m.seq);
  return {
    status: t.status,
    tick: el(`span.tick.${t.status}`, { title: `${t.status}; read by ${t.readBy} of ${t.of}` }, t.status === "sent" ? "✓" : "✓✓"),
    readBy: group && last && t.readBy ? el("div.readby", {}, `Read by ${t.readBy} of ${t.of}`) : null,
  };
}

function body(view, m) {
  const me = view.state.me;
  if (m.deleted) return el("div.body.deleted", {}, el("span.deleted-icon", { "aria-hidden": "true" }, "⊘"), "message deleted");
  if (view.editing?.seq === m.seq && m.seq) return view.editing.node;
  if (!m.body) return null;
  const ranges = mentionRanges(m.body, m.mentions, (u) => view.state.name(u));
  return el("div.body", {}, ...marked(m.body, ranges, "span", (u) => ({ class: u === me ? "mention self" : "mention", title: u })));
}

function reactions(view, m) {
  if (m.deleted || !m.reactions?.length) return null;
  const me = view.state.me;
  return el("div.reactions", {}, ...m.reactions.map((r) => {
    const on = r.user_ids.includes(me);
    return el(`button.reaction${on ? ".on" : ""}`, {
      type: "button", "data-emoji": r.emoji, "aria-pressed": String(on),
      title: `${r.user_ids.map((u) => (u === me ? "You" : view.state.name(u))).join(", ")} reacted ${r.emoji}`,
      onclick: () => view.app.actions.react(m, r.emoji, !on),
    }, el("span.emoji", {}, r.emoji), el("span.count", {}, String(r.user_ids.length)));
  }));
}

export function messageNode(view, m, { group, showSender, last }) {
  const mine = m.sender_id === view.state.me;
  const name = (u) => view.state.name(u);
  const t = tick(view, m, { group, last });
  const can = view.menu.allowed(m);
  const menu = can.reply || can.react || can.edit || can.delete ? view.menu.button(m) : null;
  const flash = view.flash && view.flash.seq === m.seq && view.flash.until > Date.now();
  const node = el(`li.msg${mine ? ".mine" : ""}${m.deleted ? ".is-deleted" : ""}${flash ? ".flash" : ""}`,
    { "data-seq": m.seq ?? null, "data-status": t.status ?? null, "data-sender": m.sender_id },
    el("div.bubble", {},
      menu,
      showSender && !mine ? el("div.sender", {}, name(m.sender_id)) : null,
      m.reply_to && !m.deleted ? quote(name, m.reply_to, { role: "link", title: "Show the message",
        onclick: () => view.jumpTo(m.reply_to.seq) }) : null,
      (m.media || m.localPreview) && !m.deleted ? view.image(m) : null,
      body(view, m),
      el("div.meta", {}, m.edited_at && !m.deleted ? el("span.edited", {}, "edited") : null,
        el("time", {}, clock(m.sent_at)), t.tick)),
    reactions(view, m),
    t.readBy,
    m.failed ? el("div.failure", {}, `Not sent: ${m.failed} `,
      el("button.link", { type: "button", onclick: () => view.app.resend(m) }, "Retry")) : null);
  view.menu.attach(node, m);
  return node;
}
