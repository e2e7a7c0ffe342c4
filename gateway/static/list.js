// The conversation list: name and avatar (profiles), last message or typing, unread count, a
// mention badge and a muted mark.

import { isMuted, peerOf, title } from "./state.js";
import { $, clock, el, typingText } from "./ui.js";

const MUTED_ICON = "🔕";

function preview(app, c) {
  const state = app.state;
  const typists = state.typists(c.conversation_id);
  const typing = c.type === "direct" ? (typists.length ? "typing…" : "") : typingText(typists.map((u) => state.name(u)));
  if (typing) return el("span.preview.is-typing", {}, typing);
  const last = c.last_message;
  if (!last) return el("span.preview", {}, "No messages yet");
  const who = last.sender_id === state.me ? "You: " : c.type === "group" ? `${state.name(last.sender_id)}: ` : "";
  const text = last.deleted ? "message deleted" : last.body || (last.media ? "Photo" : "");
  return el(`span.preview${last.deleted ? ".deleted" : ""}`, {}, `${who}${text}`);
}

export function renderList(app) {
  const state = app.state;
  const items = state.sorted().map((c) => {
    const id = c.conversation_id;
    const peer = peerOf(c, state.me);
    const name = title(c, state.me, (u) => state.name(u));
    const muted = isMuted(c);
    const pic = peer ? app.people.avatar(peer, { presence: state.presence.get(peer)?.status })
      : app.people.avatar(name, { group: true });
    return el(`li.conv${app.chat.id === id ? ".active" : ""}${muted ? ".muted" : ""}`, { "data-id": id, onclick: () => app.open(id) },
      pic,
      el("div.conv-main", {},
        el("div.conv-row", {}, el("span.conv-title", {}, name), el("time", {}, clock(c.last_message?.sent_at ?? c.created_at))),
        el("div.conv-row", {}, preview(app, c),
          muted ? el("span.muted-mark", { title: "Muted", "aria-label": "Muted" }, MUTED_ICON) : null,
          c.unread_mentions ? el("span.mention-badge", { title: `${c.unread_mentions} unread mention${c.unread_mentions === 1 ? "" : "s"}`,
            "data-count": c.unread_mentions }, c.unread_mentions > 1 ? `@${c.unread_mentions}` : "@") : null,
          c.unread ? el("span.badge.unread", {}, String(c.unread)) : null)));
  });
  $("#conversations").replaceChildren(...items);
  $("#no-conversations").hidden = items.length > 0 || !$("#search-pane").hidden;
}
