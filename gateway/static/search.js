// Message search (GET /v1/search) from the sidebar: results newest first, the matched words
// marked from the server's `highlights` (code point offsets, built as text nodes), "More results"
// pages with `before`, and a click opens the conversation at the message.

import { title } from "./state.js";
import { $, clock, el, marked } from "./ui.js";

const DEBOUNCE_MS = 250;
const LEAD = 24; // code points of context kept before the first highlight

export class Search {
  constructor(app) {
    this.app = app;
    this.input = $("#search-input");
    this.q = "";
    this.before = null;
    this.timer = null;
    this.input.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.run(), DEBOUNCE_MS);
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { clearTimeout(this.timer); this.run(); }
      if (e.key === "Escape") { this.input.value = ""; this.run(); }
    });
    $("#search-more").addEventListener("click", () => this.run({ more: true }));
  }

  get state() { return this.app.state; }

  async run({ more = false } = {}) {
    const q = this.input.value.trim();
    const searching = !!q;
    $("#search-pane").hidden = !searching;
    $("#conversations").hidden = searching;
    $("#no-conversations").hidden = searching || this.state.conversations.size > 0;
    if (!searching) { this.q = ""; return; }
    if (!more) {
      this.q = q;
      this.before = null;
      $("#search-results").replaceChildren();
      $("#search-more").hidden = true;
    }
    $("#search-status").textContent = "Searching…";
    try {
      const answer = await this.app.api.search(q, { before: this.before || undefined });
      if (q !== this.q) return; // a newer query is under way
      $("#search-results").append(...answer.results.map((r) => this.result(r)));
      const last = answer.results[answer.results.length - 1];
      if (last) this.before = last.message.sent_at;
      $("#search-more").hidden = !answer.has_more;
      const count = $("#search-results").childElementCount;
      $("#search-status").textContent = count ? `${count}${answer.has_more ? "+" : ""} message${count === 1 ? "" : "s"}` : "No messages found";
    } catch (err) {
      if (q !== this.q) return;
      $("#search-status").textContent = err.status === 404 ? "Search is not available on this server yet." : `Search failed: ${err.message}`;
    }
  }

  result({ message: m, highlights }) {
    const c = this.state.conversations.get(m.conversation_id);
    const name = c ? title(c, this.state.me, (u) => this.state.name(u)) : "Conversation";
    // Start the snippet a little before the first match so a long body shows it.
    const first = Math.min(...highlights.map((h) => h[0]), Infinity);
    const cut = first > LEAD * 2 ? first - LEAD : 0;
    const text = (cut ? "…" : "") + Array.from(m.body).slice(cut).join("");
    const shift = cut ? 1 - cut : 0;
    const who = m.sender_id === this.state.me ? "You" : this.state.name(m.sender_id);
    return el("li.result", { "data-conversation": m.conversation_id, "data-seq": m.seq, tabindex: "0",
      onclick: () => this.app.openAt(m.conversation_id, m.seq),
      onkeydown: (e) => { if (e.key === "Enter") this.app.openAt(m.conversation_id, m.seq); } },
      el("div.conv-row", {}, el("span.conv-title", {}, name), el("time", {}, clock(m.sent_at))),
      el("div.snippet", {}, el("span.snippet-sender", {}, `${who}: `),
        ...marked(text, highlights.map(([s, e]) => [s + shift, e + shift]))));
  }
}
