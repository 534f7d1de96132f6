/* Loaded on every page, so kept small (DESIGN §9: first-visit JavaScript):
   - a boosted link that cannot reach the server becomes a plain navigation, so the service
     worker answers with the offline page or the offline writing form;
   - drafts.js (drafts, the queue of entries not sent yet, the logout question) is loaded
     where it has work: a page with a draft form, a logged-in page, or a phone that already
     keeps something; a real first visit does without it;
   - the account page's reminders load push.js; a copy or share button, copy.js. */
(() => {
  "use strict";
  const d = document, { t } = window.kapjournalI18n;

  d.addEventListener("htmx:sendError", (e) => {
    const x = e.detail || {}, cfg = x.requestConfig || {}, path = x.pathInfo || {};
    if (cfg.verb === "get") {
      location.assign(path.finalRequestPath || path.requestPath || location.href);
    } else if (!(cfg.elt && cfg.elt.dataset && cfg.elt.dataset.draft)) {
      const main = d.querySelector("main") || d.body;
      let note = d.getElementById("offline-note");
      if (!note) {
        note = d.createElement("p");
        note.id = "offline-note";
        note.className = "flash flash-error";
        note.setAttribute("role", "alert");
        main.prepend(note);
      }
      note.textContent = t("You are offline, so nothing was changed. Try again when you are back online.");
    }
  });

  let drafts;
  async function load(root) {
    if (!drafts) {
      let need = d.querySelector("form[data-draft], form[data-owner]");
      if (!need && window.indexedDB) {
        need = !indexedDB.databases ||
          (await indexedDB.databases().catch(() => [])).some((db) => db.name === "kapjournal");
      }
      if (need && !drafts) {
        drafts = d.createElement("script");
        drafts.src = "/static/js/drafts.js";
        d.head.append(drafts);
      }
    }
    // After the session (helper CAPTURE): the voice-memo recorder, where a page has one.
    const rec = root && root.querySelector && root.querySelector("[data-recorder]");
    if (rec && !rec.recorderStarted) {
      rec.recorderStarted = true;
      import("/static/js/recorder.js").then((m) => m.init(rec)).catch(() => {});
    }
    if (root && root.querySelector && root.querySelector("[data-copy-target], [data-share-url]")) {
      import("/static/js/copy.js").then((m) => m.init(root)).catch(() => {});
    }
    const push = root && root.querySelector && root.querySelector("[data-push]");
    if (push && !push.pushStarted) {
      push.pushStarted = true;
      import("/static/js/push.js").then((m) => m.init(push)).catch(() => {});
    }
  }
  d.addEventListener("htmx:load", (e) => load(e.target));
  load(d);
})();
