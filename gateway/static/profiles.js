// Profiles (display names and avatars, GET /v1/users and `profile` frames) and the dialog where
// the signed-in user edits theirs (avatar upload through POST /v1/media, then PUT /v1/users/me).

import { $, avatar, el } from "./ui.js";

const BATCH = 100;

export class People {
  constructor(app) {
    this.app = app;
    this.asked = new Set();
    this.pictures = new Map(); // avatar_url -> promise of an object URL
    this.available = true;
    this.file = null;
    $("#me").addEventListener("click", () => this.edit());
    $("#profile-form").addEventListener("submit", (e) => { e.preventDefault(); this.save(); });
    $("#profile-cancel").addEventListener("click", () => $("#profile-dialog").close());
    $("#profile-file").addEventListener("change", (e) => this.pick(e.target.files[0]));
  }

  get state() { return this.app.state; }

  /** Fetch the profiles of users not asked for yet. */
  async load(userIds) {
    const wanted = userIds.filter((u) => u && !this.asked.has(u));
    if (!this.available || !wanted.length) return;
    for (const u of wanted) this.asked.add(u);
    for (let i = 0; i < wanted.length; i += BATCH) {
      try {
        const answer = await this.app.api.profiles(wanted.slice(i, i + BATCH));
        for (const p of Object.values(answer || {})) this.state.setProfile(p);
      } catch (err) {
        if (err.status === 404) this.available = false; // a 1.0 server: ids stand for names
        for (const u of wanted) this.asked.delete(u);
        return;
      }
    }
  }

  name(user) {
    return this.state.name(user);
  }

  /** The avatar of a user: their picture if they set one, else initials. */
  avatar(user, opts = {}) {
    const url = this.state.profiles.get(user)?.avatar_url;
    let src = null;
    if (url) {
      if (!this.pictures.has(url)) this.pictures.set(url, this.app.api.mediaUrl(url));
      src = this.pictures.get(url);
    }
    return avatar(this.name(user), { ...opts, src });
  }

  renderMe() {
    const me = this.state.me;
    $("#me").replaceChildren(this.avatar(me), el("span.me-name", {}, this.name(me)));
    $("#me").title = "Edit your profile";
  }

  edit() {
    const me = this.state.me;
    this.file = null;
    $("#profile-error").textContent = "";
    $("#profile-name").value = this.name(me);
    $("#profile-id").textContent = `User id: ${me}`;
    $("#profile-avatar").replaceChildren(this.avatar(me));
    $("#profile-dialog").showModal();
  }

  pick(file) {
    if (!file) return;
    if (!file.type.startsWith("image/")) {
      $("#profile-error").textContent = "An avatar must be an image.";
      return;
    }
    this.file = file;
    const preview = avatar(this.name(this.state.me), { src: Promise.resolve(URL.createObjectURL(file)) });
    $("#profile-avatar").replaceChildren(preview);
  }

  async save() {
    const fields = {};
    const name = $("#profile-name").value.trim();
    if (name && name !== this.name(this.state.me)) fields.display_name = name;
    try {
      if (this.file) fields.avatar_media_id = (await this.app.api.uploadMedia(this.file)).media_id;
      if (Object.keys(fields).length) this.state.setProfile(await this.app.api.updateProfile(fields));
      $("#profile-dialog").close();
      $("#profile-file").value = "";
    } catch (err) {
      $("#profile-error").textContent = err.status === 404 ? "Profiles are not available on this server yet." : err.message;
    }
  }
}
