/* Reminders on this device (the account page's #reminders; loaded by offline.js only there).
   A Web Push subscription made with the clinic's VAPID public key; the server keeps it
   sealed and sends reminder text only, never journal content. */
const d = document, { t, ready } = window.kapjournalI18n;

const token = () => (d.querySelector("input[name=csrf_token]") || {}).value || "";

const post = (url, data) => fetch(url, {
  method: "POST",
  credentials: "same-origin",
  headers: { "Content-Type": "application/json", "X-CSRFToken": token() },
  body: JSON.stringify(data),
});

const bytes = (b64) =>
  Uint8Array.from(atob(b64.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

const sameKey = (sub, key) => {
  const old = sub.options && sub.options.applicationServerKey;
  return !old || String(new Uint8Array(old)) === String(key);
};

class Refused extends Error {}

export async function init(root) {
  const state = root.querySelector("[data-push-state]");
  const on = root.querySelector("[data-push-on]");
  const off = root.querySelector("[data-push-off]");
  const say = (text) => { state.textContent = text; };
  await ready;
  if (!("PushManager" in window && "Notification" in window && navigator.serviceWorker)) {
    say(t("This browser cannot show reminders. On an iPhone or iPad, add this app to your Home Screen first and open it from there."));
    return;
  }
  const reg = await navigator.serviceWorker.ready;
  const show = (isOn) => {
    on.hidden = isOn;
    off.hidden = !isOn;
    say(isOn ? t("Reminders are on for this phone.") : t("Reminders are off for this phone."));
  };
  const refresh = () => window.htmx && htmx.ajax("GET", location.pathname, {
    target: "#reminders", select: "#reminders", swap: "outerHTML",
  });
  let sub = await reg.pushManager.getSubscription();
  if (sub) {
    const res = await post("/push/subscriptions/status", { endpoint: sub.endpoint });
    show(res.ok && (await res.json()).subscribed);
  } else {
    show(false);
  }

  on.addEventListener("click", async () => {
    on.disabled = true;
    try {
      if ((await Notification.requestPermission()) !== "granted") {
        throw new Refused(t("Notifications are blocked for this site. You can allow them in your browser's settings."));
      }
      const key = bytes((await (await fetch(root.dataset.push)).json()).publicKey);
      sub = await reg.pushManager.getSubscription();
      if (sub && !sameKey(sub, key)) { await sub.unsubscribe(); sub = null; }
      sub = sub || await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
      const res = await post("/push/subscriptions", sub.toJSON());
      if (!res.ok) throw new Refused(t("The server did not take it. Please try again."));
      show(true);
      refresh();
    } catch (err) {
      say(t("Could not turn reminders on.") + " " + (err instanceof Refused
        ? err.message : t("This browser's push service did not answer; please try again later.")));
    } finally {
      on.disabled = false;
    }
  });

  off.addEventListener("click", async () => {
    off.disabled = true;
    sub = sub || await reg.pushManager.getSubscription();
    if (sub) {
      await post("/push/subscriptions/remove", { endpoint: sub.endpoint }).catch(() => {});
      await sub.unsubscribe().catch(() => {});
    }
    sub = null;
    off.disabled = false;
    show(false);
    refresh();
  });
}
