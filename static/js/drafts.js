/* <form data-draft> drafts: AES-GCM in IndexedDB with a non-extractable key. */
(() => {
  "use strict";
  const d = document, S = window.crypto && crypto.subtle, A = "AES-GCM";
  if (!S) return; // e.g. plain http
  const forms = () => [...d.querySelectorAll("form[data-draft]")];
  let dbP, keyP, tick, chain = Promise.resolve();
  const req = (r) => new Promise((ok, no) => { r.onsuccess = () => ok(r.result); r.onerror = no; });
  const db = async (name, fn, rw) => {
    if (!dbP) {
      const r = indexedDB.open("kapjournal", 1);
      r.onupgradeneeded = () => ["drafts", "keys"].forEach((n) => r.result.createObjectStore(n));
      dbP = req(r).then((x) => ((x.onclose = () => (dbP = keyP = 0)), x)); // logout
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
  const save = (f, pending) => {
    clearTimeout(f.timer), f.timer = 0;
    const id = f.dataset.draft, text = JSON.stringify(read(f));
    const iv = crypto.getRandomValues(new Uint8Array(12));
    later(async () => {
      const data = await S.encrypt({ name: A, iv }, await key(), new TextEncoder().encode(text));
      await db("drafts", (s) => s.put({ id, iv, data, pending: pending || 0 }, id), 1);
      if (!pending) say(f, "Saved on this phone.");
    });
  };
  const restore = async (f) => {
    const rec = await db("drafts", (s) => s.get(f.dataset.draft));
    if (!rec) return;
    const b = await S.decrypt({ name: A, iv: rec.iv }, await key(), rec.data);
    const t = new TextDecoder().decode(b), v = JSON.parse(t), now = read(f);
    // New form: only if empty. Edit form: only if different.
    if (blank(v) || (f.elements.client_id ? !blank(now) : JSON.stringify(now) == t)) return;
    for (const e of fields(f)) {
      if (e.type == "radio") e.checked = v[e.name] == e.value;
      else if (e.k in v) e.value = v[e.k];
    }
    say(f, "Draft restored from this phone.");
  };
  // Each load or swap: drop sent drafts unless their form is back with errors.
  const run = () => {
    later(async () => {
      if (d.querySelector(".error-page")) return; // failed: keep
      for (const r of await db("drafts", (s) => s.getAll())) {
        const back = d.querySelector(`form[data-draft="${r.id}"] .field-error`);
        r.pending && await db("drafts", (s) => back ? s.put({ ...r, pending: 0 }, r.id)
          : s.delete(r.id), 1);
      }
    });
    for (const f of forms()) if (!f.seen) f.seen = later(() => restore(f));
  };
  const schedule = () => { clearTimeout(tick), tick = setTimeout(run); };
  const on = (t, fn) => d.addEventListener(t, fn);
  on("input", (e) => {
    const f = e.target.form;
    if (f && f.dataset.draft) clearTimeout(f.timer), f.timer = setTimeout(save, 600, f);
  });
  on("submit", (e) => e.target.dataset.draft && save(e.target, Date.now()));
  on("visibilitychange", () => d.hidden && forms().map((f) => f.timer && save(f)));
  on("htmx:load", schedule);
  schedule();
})();
