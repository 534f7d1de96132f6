/* <form data-draft>: drafts, and the queue of new entries not yet sent (DESIGN §6).
   Both live in IndexedDB, AES-GCM under one non-extractable key. A draft is saved as it is
   typed, with no pause needed: words typed in a panic right before a tap on "Need help now?",
   a link or Back are there when the person comes back (leaving waits for the save in flight,
   at most a second). A new entry saved offline, or whose sending was not confirmed (a network
   error, a 5xx, an expired session), waits in the queue with its client_id; it leaves the
   queue only when the server answers with the entry's page. The server is idempotent on
   client_id, so sending again (a retry, a double tap, a second tab) never makes a second
   entry. The queue is sent on each page load, when the network is back and after a login,
   by one tab at a time (Web Locks). Logout asks before it drops anything in it, or a copy of
   the person's safety plan (plan.js, which this file loads where a page shows a plan). Loaded
   by offline.js on the pages that need it. */
(() => {
  "use strict";
  const d = document, S = window.crypto && crypto.subtle, A = "AES-GCM";
  const { t, tn, ready } = window.kapjournalI18n;
  if (!S || !window.indexedDB) return; // e.g. plain http
  const ENTRY = /^\/entries\/[0-9a-f-]{36}$/;
  const forms = () => [...d.querySelectorAll("form[data-draft]")];
  // Who is logged in (base.html's logout form), so a shared phone never mixes two people's words.
  const me = () => (d.querySelector("form[data-owner]") || { dataset: {} }).dataset.owner || "";
  let dbP, keyP, tick, chain = Promise.resolve();
  const req = (r) => new Promise((ok, no) => { r.onsuccess = () => ok(r.result); r.onerror = no; });
  const db = async (name, fn, rw) => {
    if (!dbP) {
      const r = indexedDB.open("kapjournal", 2);
      r.onupgradeneeded = () => ["drafts", "keys", "queue", "meta"].forEach((n) =>
        r.result.objectStoreNames.contains(n) || r.result.createObjectStore(n));
      dbP = req(r).then((x) => // closed by logout (Clear-Site-Data) or a newer tab
        ((x.onclose = x.onversionchange = () => (x.close(), dbP = keyP = 0)), x));
    }
    return req(fn((await dbP).transaction(name, rw ? "readwrite" : "readonly").objectStore(name)));
  };
  const later = (fn) => (chain = chain.then(fn).catch(() => {}));
  const getKey = () => db("keys", (s) => s.get("draft-key"));
  const key = () => keyP || (keyP = getKey().then(async (k) => {
    if (k) return k;
    k = await S.generateKey({ name: A, length: 256 }, false, ["encrypt", "decrypt"]);
    return db("keys", (s) => s.add(k, "draft-key"), 1).then(() => k, getKey); // lost a race
  }));
  const seal = async (v) => {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    return { iv, data: await S.encrypt({ name: A, iv }, await key(), new TextEncoder().encode(JSON.stringify(v))) };
  };
  const unseal = async (r) =>
    JSON.parse(new TextDecoder().decode(await S.decrypt({ name: A, iv: r.iv }, await key(), r.data)));
  // plan.js keeps the copy of a safety plan in "meta" under PLAN + owner, sealed with the same
  // key; it is not a draft: never counted as one, never sent. `later` keeps its writes in order
  // with the logout question's count.
  const PLAN = "plan:";
  window.kapjournalStore = { db, seal, unseal, me, later, PLAN };
  const plans = async () =>
    (await db("meta", (s) => s.getAllKeys())).filter((k) => String(k).startsWith(PLAN));
  const fields = (f) => [...f.elements].filter((e) => // a stale edit draft: 409, not overwrite
    /^(text|textarea|radio)$/.test(e.type) || /^(client_id|base_digest)$/.test(e.name));
  const read = (f) => { // answers share a name: key by question
    const v = {};
    for (const e of fields(f)) {
      e.k = e.name + "|" + (e.labels?.[0]?.textContent.trim() || "");
      if (e.type != "radio") v[e.k] = e.value;
      else if (e.checked) v[e.name] = e.value;
    }
    return v;
  };
  const blank = (v) => Object.keys(v).every((k) => !v[k] || k == "client_id|");
  const say = (f, m, s = f.querySelector(".draft-status")) => s && s.textContent != m &&
    (s.textContent = m);
  const store = async (f, v, pending, quiet) => {
    const id = f.dataset.draft, rec = await seal(v);
    await db("drafts", (s) => s.put({ id, ...rec, pending: pending || 0, owner: me() }, id), 1);
    f.last = JSON.stringify(v);
    if (!pending && !quiet) say(f, t("Saved on this phone."));
  };
  // Sent: the words as they are now, marked as waiting for the server's answer.
  const save = (f, pending) => { const v = read(f); return later(() => store(f, v, pending)); };
  // Typed: saved at once. One save at a time per form; while it runs, the newest words wait
  // for the next one (only the newest matter), so nothing typed is ever skipped.
  const keep = (f, quiet) => {
    f.dirty = 1;
    return f.saving || (f.saving = later(async () => {
      while (f.dirty) f.dirty = 0, await store(f, read(f), 0, quiet);
    }).then(() => (f.saving = 0)));
  };
  const saving = () => forms().map((f) => f.saving).filter(Boolean);
  // Leaving the page waits for the words being saved, but never more than a second.
  const settled = (busy) =>
    Promise.race([Promise.all(busy), new Promise((ok) => setTimeout(ok, 1000))]);
  const restore = async (f) => {
    const rec = await db("drafts", (s) => s.get(f.dataset.draft));
    if (!rec || (rec.owner && me() && rec.owner != me())) return; // someone else's
    const v = await unseal(rec), was = JSON.stringify(v), now = read(f);
    // New form: only if empty. Edit form: only if different.
    if (blank(v) || (f.elements.client_id ? !blank(now) : JSON.stringify(now) == was)) return;
    for (const e of fields(f)) {
      if (e.type == "radio") e.checked = v[e.name] == e.value;
      else if (e.k in v) e.value = v[e.k];
    }
    f.last = was;
    say(f, t("Draft restored from this phone."));
    return true;
  };

  // --- the queue -------------------------------------------------------------------------------
  const api = (window.kapjournalQueue = { size: 0 });
  const isNew = (f) => f.dataset.draft && f.elements.client_id;
  const freshId = (f) => (f.elements.client_id.value = crypto.randomUUID());
  // A voice memo (helper CAPTURE): its bytes sealed apart from the JSON of the fields.
  const memoOf = (f) => [...new FormData(f)].find(([n, v]) => n == "memo" && v instanceof Blob && v.size);
  const sealMemo = async (file) => {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const data = await S.encrypt({ name: A, iv }, await key(), await file.arrayBuffer());
    return { iv, data, type: file.type || "audio/webm", name: file.name || "voice-memo.webm" };
  };
  const unsealMemo = async (m) =>
    new File([await S.decrypt({ name: A, iv: m.iv }, await key(), m.data)], m.name, { type: m.type });
  const enqueue = (f) => {
    const id = f.elements.client_id.value || freshId(f), action = new URL(f.action, location.href);
    const item = { action: action.pathname, draft: f.dataset.draft, words: read(f),
      fields: [...new FormData(f)].filter(([n, v]) => n != "csrf_token" && typeof v == "string") };
    const file = (memoOf(f) || [])[1];
    return later(async () => {
      // Written on the offline page (no login there): the last person logged in on this phone.
      item.owner = me() || (await db("meta", (s) => s.get("owner"))) || "";
      const rec = await seal(item);
      if (file) rec.memo = await sealMemo(file);
      await db("queue", (s) => s.put({ id, ...rec }, id), 1);
      api.size = await db("queue", (s) => s.count());
    });
  };
  const drop = (id) => later(() => db("queue", (s) => s.delete(id), 1));
  const MSG = {
    offline: (n) => tn("It will be sent when you're back online.", "They will be sent when you're back online.", n),
    login: (n) => tn("Log in and it will be sent.", "Log in and they will be sent.", n),
    later: (n) => tn("It could not be sent yet; it will be tried again.", "They could not be sent yet; they will be tried again.", n),
  };
  const saved = (n, why) => (n == 1 ? t("Saved on this phone.")
    : tn("%(n)d entry saved on this phone.", "%(n)d entries saved on this phone.", n)) + " " + MSG[why](n);
  // One line at the top of the page: what waits on this phone, what was just sent.
  const banner = (text, href, label) => {
    let b = d.getElementById("queue-note");
    const main = d.querySelector("main") || d.body;
    if (!text || !main) return b && b.remove();
    if (!b) {
      b = d.createElement("p");
      b.id = "queue-note", b.className = "flash flash-ok queue-note", b.setAttribute("role", "status");
      main.prepend(b);
    }
    b.textContent = text;
    if (href) {
      const a = d.createElement("a");
      a.href = href, a.textContent = label;
      b.append(" ", a);
    }
  };
  const note = (r) => {
    const other = r.other || 0, n = (api.size = r.left) - other, sent = Object.values(r.sent);
    let text = sent.length ? tn("Sent. It is in your journal.", "Sent %(n)d entries. They are in your journal.", sent.length) : "";
    if (n) text += (text && " ") + saved(n, r.why || "later");
    if (other) {
      text += (text && " ") + tn("One entry on this phone was written in another account. It will be sent when that person logs in.",
        "%(n)d entries on this phone were written in another account. It will be sent when that person logs in.", other);
    }
    if (r.fix) return banner(text + " " + t("One entry needs a look before it can be sent."), r.fix, t("Open it"));
    banner(text, sent.length == 1 && sent[0], t("Open it"));
  };
  const token = async () => { // a fresh CSRF token, and the proof that we are logged in
    const res = await fetch("/entries/new", { credentials: "same-origin" });
    if (new URL(res.url).pathname == "/login") return { why: "login" };
    const html = res.ok ? await res.text() : "", m = html.match(/name="csrf_token" value="([^"]+)"/);
    return m ? { t: m[1], owner: (html.match(/data-owner="([^"]+)"/) || [])[1] } : { why: "later" };
  };
  // 422: the server will not take it as it is. Back to its form as a draft, unless one waits.
  const toDraft = async (r, it) => {
    if (await db("drafts", (s) => s.get(it.draft))) return;
    const rec = await seal(it.words);
    await db("drafts", (s) => s.put({ id: it.draft, ...rec, pending: 0 }, it.draft), 1);
    await db("queue", (s) => s.delete(r.id), 1);
    return it.action == "/capture" ? "/capture" : "/entries/new?kind=" + it.draft.slice(4);
  };
  const send = async () => {
    await chain;
    const items = await db("queue", (s) => s.getAll()), r = { sent: {}, left: items.length };
    if (!items.length) return r;
    if (!navigator.onLine) return ((r.why = "offline"), r);
    let tok;
    try { tok = await token(); } catch (e) { tok = { why: "offline" }; }
    if (!tok.t) return ((r.why = tok.why), r);
    for (const q of items) {
      const it = await unseal(q);
      let body = new URLSearchParams(it.fields);
      if (q.memo) { // multipart, with the memo as the form's file
        body = new FormData();
        for (const [n, v] of it.fields) body.append(n, v);
        const file = await unsealMemo(q.memo);
        body.append("memo", file, file.name);
      }
      if (it.owner && it.owner != tok.owner) { r.other = (r.other || 0) + 1; continue; }
      body.set("csrf_token", tok.t);
      let res;
      try {
        res = await fetch(it.action, { method: "POST", body, credentials: "same-origin" });
      } catch (e) { r.why = "offline"; break; }
      const path = new URL(res.url).pathname;
      if (res.ok && ENTRY.test(path)) {
        await db("queue", (s) => s.delete(q.id), 1);
        r.sent[q.id] = path, r.left--;
      } else if (res.status == 422) {
        r.fix = (await toDraft(q, it)) || r.fix;
        r.left = await db("queue", (s) => s.count());
      } else if (path == "/login") { r.why = "login"; break; }
    }
    return r;
  };
  let retry, wait = 1000;
  const sync = api.send = async () => {
    let r;
    clearTimeout(retry);
    try { r = await (navigator.locks ? navigator.locks.request("kapjournal-queue", send) : send()); }
    catch (e) { r = { sent: {}, left: api.size, why: "later" }; }
    note(r);
    // Still waiting while the page stays open: try again, less and less often.
    if (r.left > (r.other || 0) && r.why != "login" && navigator.onLine) retry = setTimeout(sync, wait = Math.min(wait * 2, 60000));
    else wait = 1000;
    return r;
  };
  api.discard = () => later(async () => {
    await db("queue", (s) => s.clear(), 1), await db("drafts", (s) => s.clear(), 1);
  }).then(() => (api.size = api.drafts = 0));
  // Logging out but keeping the queue and the drafts (encrypted): web storage goes.
  api.keep = () => later(() => {
    localStorage.clear(), sessionStorage.clear();
  });
  // Log out. `keep`: the server then clears only the HTTP cache, so what waits here stays.
  const leave = async (form, keep) => {
    if (keep) {
      await api.keep();
      form.append(Object.assign(d.createElement("input"), { type: "hidden", name: "keep_unsent", value: "1" }));
    }
    form.confirmedLogout = 1, form.requestSubmit();
  };
  // Saved while offline (or from the offline page): into the queue, and a clean form.
  const park = (f) => {
    const more = memoOf(f) || f.querySelector("input[name=feeling]:checked"); // a capture
    if (blank(read(f)) && !more) return say(f, t("Write something first."));
    const id = f.elements.client_id.value || freshId(f);
    enqueue(f);
    later(() => db("drafts", (s) => s.delete(f.dataset.draft), 1));
    f.dirty = 0;
    f.reset(), freshId(f);
    say(f, navigator.onLine ? t("Saved on this phone.") : saved(1, "offline"));
    later(() => 0).then(sync).then((r) => r.sent[id] && location.assign(r.sent[id]));
  };

  // Logout (the nav's form, or this device's on the account page) with entries waiting here,
  // or a copy of this person's safety plan (which then stays only if they say so).
  const ask = (form) => {
    const dlg = d.createElement("dialog"), n = api.size || 0, m = api.drafts || 0, p = api.plan;
    dlg.className = "card stack logout-dialog";
    dlg.setAttribute("aria-labelledby", "logout-q");
    dlg.innerHTML = `<h2 id="logout-q"></h2>
<p></p>
<p class="logout-msg" role="status"></p>
<div class="actions">
<button type="button" class="button" value="send"></button>
<button type="button" class="button button-secondary" value="keep"></button>
<button type="button" class="button button-danger" value="discard"></button>
<button type="button" class="button button-secondary" value="cancel"></button>
</div>`;
    const h = dlg.querySelector("h2"), b = (v) => dlg.querySelector(`[value="${v}"]`);
    h.nextElementSibling.textContent = t("They are kept encrypted on this phone until the server has them.");
    b("send").textContent = t("Send them first");
    b("keep").textContent = t("Log out and keep them");
    b("discard").textContent = t("Discard them");
    b("cancel").textContent = t("Cancel");
    const entries = n && tn("1 unsent entry", "%(n)d unsent entries", n);
    const drafts = m && tn("1 unfinished draft", "%(n)d unfinished drafts", m);
    const what = entries && drafts ? t("%(entries)s and %(drafts)s", { entries, drafts }) : entries || drafts;
    h.textContent = t("You have %(what)s on this phone", { what });
    if (!n) b("send").hidden = true;
    let box; // with entries or drafts too: the plan copy is its own choice
    if (p && (n || m)) {
      const label = d.createElement("label");
      box = Object.assign(d.createElement("input"), { type: "checkbox", checked: true });
      label.className = "checkbox";
      label.append(box, " " + t("Also keep the copy of my safety plan on this phone"));
      dlg.querySelector(".logout-msg").before(label);
    } else if (p) {
      h.textContent = t("Keep the copy of your safety plan on this phone?");
      h.nextElementSibling.textContent = t("It stays encrypted, and opens from “Need help now?” " +
        "even without a signal or a login — for anyone who has this phone.");
      b("keep").textContent = t("Log out and keep it");
      b("discard").textContent = t("Remove it and log out");
    }
    const msg = dlg.querySelector(".logout-msg");
    dlg.addEventListener("close", () => dlg.remove());
    dlg.addEventListener("click", async (e) => {
      const v = e.target.closest("button")?.value;
      if (!v) return;
      if (v == "send") {
        msg.textContent = t("Sending…");
        if ((await sync()).left) {
          return (msg.textContent = t("They could not be sent now. You can log out and keep " +
            "them on this phone, or try again later."));
        }
      }
      if (v == "cancel") return dlg.close();
      if (v == "discard") await api.discard();
      const plan = p && (box ? box.checked : v == "keep");
      if (p && !plan) await later(() => db("meta", (s) => s.delete(PLAN + me()), 1));
      dlg.close();
      leave(form, v == "keep" || (v == "send" && m) || plan || api.others);
    });
    d.body.append(dlg);
    dlg.showModal();
  };

  // Each load or swap: drop drafts the server confirmed; send what waits.
  const run = () => {
    guardHistory(); // htmx has set its handler by the time it fires htmx:load
    later(async () => {
      if (me()) await db("meta", (s) => s.put(me(), "owner"), 1);
      for (const r of await db("drafts", (s) => s.getAll())) {
        if (!r.pending) continue;
        const back = d.querySelector(`form[data-draft="${r.id}"] .field-error`);
        // New entries: their words are in the queue until confirmed. Edits: only once the
        // server showed the saved entry; an error page or the login page keeps them.
        const done = r.id.startsWith("new-") || location.pathname == "/entries/" + r.id.slice(6);
        if (back) await db("drafts", (s) => s.put({ ...r, pending: 0 }, r.id), 1);
        else if (done) await db("drafts", (s) => s.delete(r.id), 1);
      }
      if ((api.size = await db("queue", (s) => s.count()))) sync();
    });
    if (!d.querySelector("script[src='/static/js/plan.js']") &&
        d.querySelector("[data-plan-copy], [data-plan-offline]")) {
      d.head.append(Object.assign(d.createElement("script"), { src: "/static/js/plan.js" }));
    }
    for (const f of forms()) {
      if (f.seen) continue;
      if (isNew(f) && !f.elements.client_id.value) freshId(f);
      key().catch(() => (keyP = 0)); // ready before the first keystroke: a save is quick
      // Words already in a new form (typed before this script ran, or sent back with an
      // error) are kept too.
      f.seen = later(() => restore(f)).then((back) =>
        !back && !f.saving && isNew(f) && !blank(read(f)) && keep(f, 1));
    }
  };
  // The first run waits for the page's language (it may say "Draft restored").
  const schedule = () => ready.then(() => { clearTimeout(tick), tick = setTimeout(run); });
  const on = (type, fn, capture) => d.addEventListener(type, fn, capture);
  on("input", (e) => {
    const f = e.target.form;
    if (f && f.dataset.draft) keep(f);
  });
  // A tap on a link while words are being saved (the nav, "Need help now?", any link that
  // leaves the page): wait for the save, then follow the link as tapped.
  on("click", (e) => {
    const a = e.target.closest && e.target.closest("a[href]"), busy = saving();
    if (!a || a.letGo || !busy.length || e.defaultPrevented || e.button || e.ctrlKey ||
        e.metaKey || e.shiftKey || e.altKey || a.target || !/^https?:$/.test(a.protocol) ||
        (a.hash && a.pathname == location.pathname && a.search == location.search)) {
      return a && (a.letGo = 0);
    }
    e.preventDefault(), e.stopImmediatePropagation();
    if (a.waiting) return; // a second tap while waiting: still one visit
    a.waiting = 1;
    settled(busy).then(() => { a.waiting = 0, a.letGo = 1; a.click(); });
  }, true);
  // Back or Forward inside the app: htmx answers in window.onpopstate (its only hook, run
  // before any listener) by reloading the page at once. Its handler is wrapped to wait first.
  const guardHistory = () => {
    const inner = window.onpopstate;
    if (!inner || inner.waitsForDrafts) return;
    const outer = (e) => {
      const busy = saving();
      if (!busy.length) return inner.call(window, e);
      settled(busy).then(() => inner.call(window, e));
    };
    outer.waitsForDrafts = 1;
    window.onpopstate = outer;
  };
  // Capture: before htmx sees the submit, so an offline one can be kept here instead.
  on("submit", (e) => {
    const f = e.target;
    if ((f.getAttribute("action") == "/logout" || f.hasAttribute("data-logout")) &&
        !f.confirmedLogout) {
      // Unsent entries and unfinished drafts are never wiped without asking.
      e.preventDefault(), e.stopImmediatePropagation();
      later(async () => { // after the saves in flight: they are in the same chain
        api.size = await db("queue", (s) => s.count());
        api.drafts = await db("drafts", (s) => s.count());
        const p = await plans();
        api.plan = p.includes(PLAN + me());
        api.others = p.length - api.plan; // someone else's plan copy: theirs to remove
      }).then(() => {
        if (api.size || api.drafts || api.plan) return ask(f);
        leave(f, api.others);
      });
      return;
    }
    if (!f.dataset.draft) return;
    if (isNew(f) && (!navigator.onLine || "offlineForm" in f.dataset)) {
      e.preventDefault(), e.stopPropagation();
      return park(f);
    }
    save(f, Date.now());
    if (isNew(f)) enqueue(f);
  }, true);
  // A new entry the server did not take, with an error page (a 400 when the form outlived its
  // login, a 5xx): the page is not swapped in over the form. Its words wait in the queue, and
  // what the queue says about them is the one message the person reads.
  const refused = (x) => x.status >= 400 && x.status != 422;
  const newEntryOf = (e) => {
    const f = (e.detail.requestConfig || {}).elt;
    return f && f.elements && isNew(f) && e.detail.xhr ? f : null;
  };
  on("htmx:beforeSwap", (e) => {
    if (newEntryOf(e) && refused(e.detail.xhr)) e.detail.shouldSwap = false;
  });
  // The answer to a new entry sent by htmx: the entry's page, or a 422, ends its wait.
  on("htmx:afterRequest", (e) => {
    const f = newEntryOf(e), x = e.detail.xhr;
    if (!f) return;
    const id = f.elements.client_id.value, path = x.responseURL && new URL(x.responseURL).pathname;
    if (x.status == 422 || (x.status == 200 && ENTRY.test(path))) return drop(id);
    const why = !x.status ? "offline" : path == "/login" ? "login" : "later";
    if (!x.status || refused(x)) { // not taken: the words are in the queue; a clean form
      later(() => db("drafts", (s) => s.delete(f.dataset.draft), 1));
      f.reset(), freshId(f);
    }
    if (refused(x)) { // ask once why (a login that ended, or the server), and say only that
      const told = () => say(f, d.getElementById("queue-note")?.firstChild.nodeValue || "");
      return later(() => 0).then(sync).then(told);
    }
    if (!x.status) say(f, saved(1, why));
    later(() => db("queue", (s) => s.count())).then((n) => note({ sent: {}, left: n, why }));
  });
  // Leaving by other means (closing the tab, switching apps, a reload): start a save of any
  // words not saved yet; the one in flight, if any, finishes as far as the browser lets it.
  const flush = () => forms().forEach((f) =>
    !f.saving && f.last != null && JSON.stringify(read(f)) != f.last && keep(f));
  on("visibilitychange", () => d.hidden && flush());
  window.addEventListener("pagehide", flush);
  on("htmx:load", schedule);
  window.addEventListener("online", () => sync());
  schedule();
})();
