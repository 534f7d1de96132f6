/* A copy of the patient's safety plan on this phone, so that "Need help now?" (/help, cached
   by the service worker) can show it without a signal or a login. Loaded by drafts.js where a
   page shows a plan, and built on its store: the same IndexedDB database and the same
   non-extractable AES-GCM key. One sealed record per person, in "meta" under PLAN + owner; it
   is never sent anywhere. Logging out asks whether to keep it (drafts.js).
   - the plan's own page ([data-plan-copy], its author only): keep or remove the copy; an
     edited plan refreshes the copy;
   - /help ([data-plan-offline]): the copy of whoever is logged in here, or when nobody is,
     of the last person who was. User text goes in through textContent only. */
(() => {
  "use strict";
  const d = document, store = window.kapjournalStore;
  if (!store) return;
  const { db, seal, unseal, me, later, PLAN } = store;
  const { t, ready } = window.kapjournalI18n;

  const load = async (owner) => {
    const rec = owner && (await db("meta", (s) => s.get(PLAN + owner)));
    return rec && rec.owner == owner ? unseal(rec) : null;
  };
  // `later` resolves to undefined when the work failed.
  const save = (owner, copy) => later(async () => {
    const rec = { owner, ...(await seal(copy)) }; // sealed first: a transaction cannot wait
    await db("meta", (s) => s.put(rec, PLAN + owner), 1);
    return true;
  });
  const forget = (owner) => later(async () => {
    await db("meta", (s) => s.delete(PLAN + owner), 1);
    return true;
  });

  // The plan as the page shows it: each step's heading and words (empty if not written yet).
  const read = (plan) => [...plan.querySelectorAll("[data-plan-step]")].map((step) => ({
    label: step.querySelector("[data-plan-label]").textContent.trim(),
    text: (step.querySelector("[data-plan-text]") || { textContent: "" }).textContent.trim(),
  }));

  const offerCopy = async (box) => {
    const plan = d.querySelector("[data-plan][data-plan-id]");
    const owner = box.dataset.owner, keep = box.querySelector("[data-plan-keep]");
    const drop = box.querySelector("[data-plan-forget]"), status = box.querySelector("[data-plan-status]");
    if (!plan || !owner) return;
    const now = () => ({ entry: plan.dataset.planId, saved: new Date().toISOString(), steps: read(plan) });
    const kept = (yes, focus) => {
      keep.hidden = yes, drop.hidden = !yes;
      if (focus) (yes ? drop : keep).focus(); // the pressed button just disappeared
    };
    keep.addEventListener("click", async () => {
      const ok = await save(owner, now());
      status.textContent = ok
        ? t("Saved on this phone — it opens from “Need help now?” even without a signal.")
        : t("The copy could not be saved on this phone.");
      if (ok) kept(true, true);
    });
    drop.addEventListener("click", async () => {
      const ok = await forget(owner);
      status.textContent = ok ? t("The copy was removed from this phone.") : t("The copy could not be removed.");
      if (ok) kept(false, true);
    });
    let copy = null;
    try { copy = await load(owner); } catch (e) { /* unreadable (a new key): keep a new one */ }
    kept(!!copy);
    box.hidden = false;
    if (!copy) return;
    const fresh = now();
    if (copy.entry == fresh.entry && JSON.stringify(copy.steps) == JSON.stringify(fresh.steps)) {
      status.textContent = t("A copy is saved on this phone.");
    } else if (await save(owner, fresh)) {
      status.textContent = t("Your plan has changed, so the copy on this phone was updated.");
    }
  };

  const el = (tag, text, className) =>
    Object.assign(d.createElement(tag), { textContent: text }, className ? { className } : {});
  const showCopy = async (box) => {
    let copy = null;
    try {
      copy = await load(me() || (await db("meta", (s) => s.get("owner"))));
    } catch (e) { /* not readable here any more: show nothing */ }
    if (!copy) return;
    const date = new Date(copy.saved).toLocaleDateString(d.documentElement.lang || undefined, { dateStyle: "long" });
    box.replaceChildren(el("h3", t("Your safety plan (copy on this phone, saved %(date)s)", { date })));
    for (const step of copy.steps.filter((s) => s.text)) {
      box.append(el("h4", step.label), el("p", step.text, "card-text"));
    }
    box.hidden = false;
  };

  // This page, and each page htmx swaps in.
  const start = () => {
    for (const box of d.querySelectorAll("[data-plan-copy], [data-plan-offline]")) {
      if (box.planStarted) continue;
      box.planStarted = true;
      ("planCopy" in box.dataset ? offerCopy : showCopy)(box);
    }
  };
  d.addEventListener("htmx:load", () => ready.then(start));
  ready.then(start);
})();
