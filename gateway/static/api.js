// HTTP side of ../shared/PROTOCOL.md (1.1) and what the client keeps in localStorage.
// No token is ever held by this script or kept in storage: the gateway keeps the session in an
// HttpOnly cookie (gateway/session.py) that the browser sends with every same-origin request.

const KEY = "chat.";

export const store = {
  get(name, fallback = null) {
    try {
      const raw = localStorage.getItem(KEY + name);
      return raw === null ? fallback : JSON.parse(raw);
    } catch {
      return fallback;
    }
  },
  set(name, value) {
    localStorage.setItem(KEY + name, JSON.stringify(value));
  },
  remove(name) {
    localStorage.removeItem(KEY + name);
  },
};

export function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One id per browser profile, kept across sign-ins. */
export function deviceId() {
  let id = store.get("device");
  if (!id) {
    id = `web-${newId().slice(0, 12)}`;
    store.set("device", id);
  }
  return id;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor(onUnauthorized = () => {}) {
    this.onUnauthorized = onUnauthorized;
  }

  /** Development sign-in into the session cookie; the answer names the user, never a token. */
  static async signIn(userId) {
    const r = await fetch("/v1/dev/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: userId }),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new ApiError(r.status, body.error?.code, body.error?.message);
    return body.user_id;
  }

  /** The signed-in user of this browser's session cookie, or null. */
  static async currentUser() {
    const r = await fetch("/v1/session");
    if (!r.ok) return null;
    return (await r.json().catch(() => ({}))).user_id || null;
  }

  /** Clears the session cookie. */
  static async signOut() {
    await fetch("/v1/session", { method: "DELETE" }).catch(() => {});
  }

  async call(method, path, body, headers = {}) {
    const init = { method, headers: { ...headers } };
    if (body instanceof Blob) {
      init.body = body;
    } else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const r = await fetch(path, init);
    if (r.status === 401) this.onUnauthorized();
    if (r.status === 204) return null;
    const data = (r.headers.get("Content-Type") || "").includes("json") ? await r.json().catch(() => null) : null;
    if (!r.ok) throw new ApiError(r.status, data?.error?.code, data?.error?.message);
    return data;
  }

  conversations() {
    return this.call("GET", "/v1/conversations").then((b) => b.conversations);
  }
  /**
   * A creating POST with an idempotency key (Idempotency-Key): when its answer is lost (the
   * network failed, or 503 as the server's wait for its workers ran out) it is sent again with
   * the same key, and the server answers the retry with what the first attempt made, never a
   * second one. The caller keeps `key` to retry later itself (a click on Create again).
   */
  async create(path, body, key = newId(), headers = {}, attempts = 3) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.call("POST", path, body, { ...headers, "Idempotency-Key": key });
      } catch (err) {
        const lost = !(err instanceof ApiError) || err.status === 503;
        if (!lost || attempt >= attempts) throw err;
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }
  createGroup(name, members, key) {
    return this.create("/v1/conversations", { type: "group", name, description: "", members }, key);
  }
  createDirect(peer, key) {
    return this.create("/v1/conversations", { type: "direct", peer }, key);
  }
  messages(conversationId, { beforeSeq, limit = 30 } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (beforeSeq) q.set("before_seq", String(beforeSeq));
    return this.call("GET", `/v1/conversations/${encodeURIComponent(conversationId)}/messages?${q}`);
  }
  receipts(conversationId) {
    return this.call("GET", `/v1/conversations/${encodeURIComponent(conversationId)}/receipts`).then((b) => b.members);
  }
  presence(userIds) {
    return this.call("GET", `/v1/presence?user_ids=${userIds.map(encodeURIComponent).join(",")}`);
  }
  search(q, { conversationId, before, limit = 20 } = {}) {
    const query = new URLSearchParams({ q, limit: String(limit) });
    if (conversationId) query.set("conversation_id", conversationId);
    if (before) query.set("before", String(before));
    return this.call("GET", `/v1/search?${query}`);
  }
  /** Messages with seq in (afterSeq, afterSeq + limit], ascending. */
  messagesAfter(conversationId, afterSeq, limit = 30) {
    const q = new URLSearchParams({ limit: String(limit), after_seq: String(afterSeq) });
    return this.call("GET", `/v1/conversations/${encodeURIComponent(conversationId)}/messages?${q}`);
  }
  mute(conversationId, mutedUntil) {
    return this.call("PUT", `/v1/conversations/${encodeURIComponent(conversationId)}/settings`, { muted_until: mutedUntil });
  }
  profiles(userIds) {
    return this.call("GET", `/v1/users?ids=${userIds.map(encodeURIComponent).join(",")}`);
  }
  updateProfile(fields) {
    return this.call("PUT", "/v1/users/me", fields);
  }
  blocked() {
    return this.call("GET", "/v1/users/me/blocked").then((b) => b.user_ids);
  }
  block(userId, on) {
    return this.call(on ? "PUT" : "DELETE", `/v1/users/me/blocked/${encodeURIComponent(userId)}`);
  }
  uploadMedia(file) {
    return this.create("/v1/media", file, newId(), { "Content-Type": file.type || "application/octet-stream" });
  }

  /** An object URL for a media url (our own server's urls are read with the session cookie). */
  async mediaUrl(url) {
    if (!url.startsWith("/") && !url.startsWith(location.origin)) return url;
    const r = await fetch(url);
    if (!r.ok) throw new ApiError(r.status);
    return URL.createObjectURL(await r.blob());
  }
}
