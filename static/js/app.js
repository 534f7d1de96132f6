/* kapjournal behaviour: no dependencies, no eval, CSP-safe (<script src defer>). */
(function () {
  "use strict";
  var doc = document;

  // Languages (issue 16): t("Words", {name: v}) and tn("one", "%(n)d many", n), English until
  // /i18n/<lang>.json (for <html lang>) is in; `ready` settles when it is, or after 1.5 s.
  var lang = (doc.documentElement.lang || "en").split("-")[0], cat = { messages: {} };
  function fill(text, vars) {
    return text.replace(/%(?:\((\w+)\))?([sd%])/g, function (all, name, kind) {
      return kind === "%" ? "%" : vars && name in vars ? String(vars[name]) : all;
    });
  }
  function t(msgid, vars) { return fill(cat.messages[msgid] || msgid, vars); }
  function tn(one, many, n, vars) {
    var forms = cat.messages[one], i = forms ? cat.plural.indexOf(new Intl.PluralRules(lang).select(n)) : -1;
    return fill((forms && forms[i < 0 ? forms.length - 1 : i]) || (n === 1 ? one : many), Object.assign({ n: n }, vars));
  }
  var ready = lang === "en" ? Promise.resolve() : Promise.race([
    fetch("/i18n/" + lang + ".json").then(function (r) { return r.json(); })
      .then(function (found) { if (found.messages) cat = found; }).catch(function () {}),
    new Promise(function (ok) { setTimeout(ok, 1500); })
  ]);
  window.kapjournalI18n = { t: t, tn: tn, ready: ready };

  // The server shows times in the browser's zone (the `tz` cookie).
  try {
    var tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (tz && /^[\w+\/-]+$/.test(tz) && doc.cookie.split("; ").indexOf("tz=" + tz) < 0) {
      doc.cookie = "tz=" + tz + "; path=/; SameSite=Lax; max-age=31536000" +
        (location.protocol === "https:" ? "; Secure" : "");
    }
  } catch (err) { /* no Intl: the clinic's zone */ }

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {});
  }

  // data-confirm="Question?" on a <form>: plain and htmx submits.
  var confirmed = new WeakSet();
  doc.addEventListener("submit", function (e) {
    var q = e.target.tagName === "FORM" && e.target.getAttribute("data-confirm");
    if (!q) return;
    if (window.confirm(q)) {
      confirmed.add(e);
    } else {
      e.preventDefault();
      e.stopImmediatePropagation();
    }
  }, true);

  doc.addEventListener("htmx:confirm", function (e) {
    var d = e.detail || {};
    var elt = d.elt;
    if (!elt || !elt.getAttribute || confirmed.has(d.triggeringEvent)) return;
    var q = elt.getAttribute("data-confirm");
    if (!q && elt.form && elt.type === "submit") q = elt.form.getAttribute("data-confirm");
    if (!q) return;
    e.preventDefault();
    if (window.confirm(q)) d.issueRequest(true);
  });

  // A question swapped into the page by htmx (e.g. "Share this with …?"): focus it.
  doc.addEventListener("htmx:load", function (e) {
    var el = e.target;
    if (el === doc.body || !el.querySelector) return;
    var q = el.matches("[data-focus]") ? el : el.querySelector("[data-focus]");
    if (q) q.focus();
  });

  // After htmx swaps <body> or <main>, focus its <h1> for screen readers.
  doc.body.addEventListener("htmx:afterSwap", function (e) {
    var main = e.target;
    if (main !== doc.body && main.tagName !== "MAIN") return;
    var h1 = main.querySelector("h1");
    if (!h1) return;
    if (!h1.hasAttribute("tabindex")) h1.setAttribute("tabindex", "-1");
    h1.focus();
  });
})();
