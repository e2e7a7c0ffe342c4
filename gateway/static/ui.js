// Small DOM helpers shared by the views.

export const $ = (selector, root = document) => root.querySelector(selector);

/** el("div.a.b", {attrs}, ...children) */
export function el(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else if (k === "style") node.style.cssText = v;  // CSSOM: the CSP allows no style attributes
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

const COLOURS = ["#e17055", "#0984e3", "#00b894", "#6c5ce7", "#fdcb6e", "#e84393", "#00cec9", "#d63031"];

/** A round avatar: initials on a colour from the name, or the picture once `src` (a promise of
 * an object URL) resolves. */
export function avatar(name, { group = false, presence = null, src = null } = {}) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  const initials = group ? "#" : name.replace(/[^\p{L}\p{N}]/gu, "").slice(0, 2).toUpperCase() || "?";
  const node = el("span.avatar", { style: `background:${COLOURS[h % COLOURS.length]}`, "aria-hidden": "true" }, initials,
    presence ? el(`span.dot.${presence}`, { title: presence, "data-presence": presence }) : null);
  if (src) {
    src.then((url) => { node.prepend(el("img.avatar-img", { src: url, alt: "" })); node.classList.add("has-img"); }, () => {});
  }
  return node;
}

/** Text with marked ranges ([start, end) in code points) as text nodes and <mark>s: never HTML. */
export function marked(text, ranges, tag = "mark", attrs = () => ({})) {
  const chars = Array.from(text);
  const nodes = [];
  let at = 0;
  for (const [start, end, extra] of [...ranges].sort((a, b) => a[0] - b[0] || b[1] - a[1])) {
    if (start < at || end <= start) continue;
    if (start > at) nodes.push(document.createTextNode(chars.slice(at, start).join("")));
    nodes.push(el(tag, attrs(extra), chars.slice(start, end).join("")));
    at = end;
  }
  if (at < chars.length) nodes.push(document.createTextNode(chars.slice(at).join("")));
  return nodes;
}

/** Code point ranges of "@name" for each mentioned user (by display name or id) in a body. */
export function mentionRanges(body, mentions, name) {
  const chars = Array.from(body);
  const lower = chars.map((c) => c.toLowerCase());
  const ranges = [];
  for (const user of mentions || []) {
    for (const label of new Set([name(user), user])) {
      const want = Array.from(`@${label}`.toLowerCase());
      for (let i = 0; i + want.length <= lower.length; i++) {
        if (want.every((c, k) => lower[i + k] === c)) ranges.push([i, i + want.length, user]);
      }
    }
  }
  return ranges;
}

export function clock(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) {
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return d.toLocaleDateString([], { month: "short", day: "numeric" });
}

export function lastSeen(p) {
  if (!p) return "";
  if (p.status === "online") return "online";
  return p.last_seen ? `last seen ${clock(p.last_seen)}` : "offline";
}

export function typingText(users) {
  if (!users.length) return "";
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
  return `${users.length} people are typing…`;
}
