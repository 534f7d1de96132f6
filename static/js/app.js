/* kapjournal behaviour: no dependencies, no eval, CSP-safe (<script src defer>). */
(function () {
  "use strict";
  var doc = document;

  // Languages (issue 16). The scripts write their words as t("English words", {name: value})
  // and tn("one entry", "%(n)d entries", n); pybabel extracts them (babel.cfg) into the
  // catalogue, and the app serves each language's as /i18n/<lang>.json (the service worker
  // keeps a copy for the offline pages). The page's <html lang> says which; English, or the
  // catalogue not loaded (yet), gives the English words. `ready` settles when it is loaded,
  // failed, or after 1.5 s: scripts that speak as the page opens wait for it.
  var lang = (doc.documentElement.lang || "en").split("-")[0].toLowerCase();
  var catalogue = { plural: ["one", "other"], messages: {} };
  function fill(text, vars) {
    return text.replace(/%(?:\((\w+)\))?([sd%])/g, function (all, name, kind) {
      if (kind === "%") return "%";
      return vars && name in vars ? String(vars[name]) : all;
    });
  }
  function t(msgid, vars) {
    var found = catalogue.messages[msgid];
    return fill(typeof found === "string" && found ? found : msgid, vars);
  }
  function tn(one, many, n, vars) {
    var forms = catalogue.messages[one], index = -1;
    if (Array.isArray(forms) && window.Intl && Intl.PluralRules) {
      index = catalogue.plural.indexOf(new Intl.PluralRules(lang).select(n));
      if (index < 0) index = forms.length - 1;
    }
    var text = index >= 0 && forms[index] ? forms[index] : n === 1 ? one : many;
    return fill(text, Object.assign({ n: n }, vars));
  }
  var ready = Promise.resolve();
  if (lang !== "en" && /^[a-z]{2,3}$/.test(lang) && window.fetch) {
    ready = Promise.race([
      fetch("/i18n/" + lang + ".json", { credentials: "omit" })
        .then(function (res) { return res.ok ? res.json() : null; })
        .then(function (found) { if (found && found.messages) catalogue = found; })
        .catch(function () { /* English */ }),
      new Promise(function (ok) { setTimeout(ok, 1500); })
    ]);
  }
  window.kapjournalI18n = { lang: lang, t: t, tn: tn, ready: ready };

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

  function announce(msg) {
    var live = doc.getElementById("live");
    if (!live) return;
    live.textContent = "";
    setTimeout(function () { live.textContent = msg; }, 50);
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

  // data-copy-target="#id": copy value/text to the clipboard.
  function fallbackCopy(target) {
    var sel = window.getSelection();
    if (target.select) {
      target.select();
    } else if (sel) {
      var range = doc.createRange();
      range.selectNodeContents(target);
      sel.removeAllRanges();
      sel.addRange(range);
    }
    var ok = false;
    try { ok = doc.execCommand("copy"); } catch (err) { /* unsupported */ }
    return ok ? Promise.resolve() : Promise.reject(new Error("copy"));
  }

  function copy(btn) {
    var target = null;
    try { target = doc.querySelector(btn.getAttribute("data-copy-target")); } catch (err) { /* bad selector */ }
    if (!target) return;
    var text = ("value" in target ? target.value : target.textContent || "").trim();
    var p = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(target); })
      : fallbackCopy(target);
    if (!btn.hasAttribute("data-copy-label")) btn.setAttribute("data-copy-label", btn.textContent);
    p.then(function () {
      btn.textContent = t("Copied");
      announce(t("Copied to clipboard"));
    }, function () {
      btn.textContent = t("Copy failed");
      announce(t("Could not copy. Select the text and copy it by hand."));
    }).then(function () {
      clearTimeout(btn.copyTimer);
      btn.copyTimer = setTimeout(function () {
        btn.textContent = btn.getAttribute("data-copy-label");
      }, 2000);
    });
  }

  // data-share-url + data-share-title: Web Share; hidden where unsupported.
  function initShare(root) {
    if (!root || !root.querySelectorAll) return;
    var btns = root.querySelectorAll("[data-share-url]");
    for (var i = 0; i < btns.length; i++) btns[i].hidden = !navigator.share;
  }

  function share(btn) {
    if (!navigator.share) return;
    navigator.share({
      url: new URL(btn.getAttribute("data-share-url"), location.href).href,
      title: btn.getAttribute("data-share-title") || doc.title
    }).catch(function () {});
  }

  doc.addEventListener("click", function (e) {
    var el = e.target.closest && e.target.closest("[data-copy-target],[data-share-url]");
    if (!el) return;
    if (el.hasAttribute("data-copy-target")) copy(el);
    else share(el);
  });

  initShare(doc);
  doc.addEventListener("htmx:load", function (e) { initShare(e.target); });

  // A question swapped into the page by htmx (e.g. "Share this with …?"): focus it.
  doc.addEventListener("htmx:load", function (e) {
    var el = e.target;
    if (el === doc.body || !el.querySelector) return;
    var q = el.matches("[data-focus]") ? el : el.querySelector("[data-focus]");
    if (q) q.focus();
  });

  // After htmx swaps <body> or <main>, focus its <h1> for screen readers.
  doc.body.addEventListener("htmx:afterSwap", function (e) {
    var t = e.target;
    if (t !== doc.body && t.tagName !== "MAIN") return;
    var h1 = t.querySelector("h1");
    if (!h1) return;
    if (!h1.hasAttribute("tabindex")) h1.setAttribute("tabindex", "-1");
    h1.focus();
  });
})();
