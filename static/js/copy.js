/* Copy to the clipboard (data-copy-target="#id") and the Web Share button (data-share-url,
   data-share-title; hidden where unsupported): loaded by offline.js on the pages that have one
   (a recovery code, an invitation link), so a first visit does without it. */
const doc = document, { t } = window.kapjournalI18n;

function announce(msg) {
  var live = doc.getElementById("live");
  if (!live) return;
  live.textContent = "";
  setTimeout(function () { live.textContent = msg; }, 50);
}

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

function onClick(e) {
  var el = e.target.closest && e.target.closest("[data-copy-target],[data-share-url]");
  if (!el) return;
  if (el.hasAttribute("data-copy-target")) copy(el);
  else share(el);
}

let listening = false;
export function init(root) {
  if (!listening) {
    listening = true;
    doc.addEventListener("click", onClick);
  }
  initShare(root);
}
