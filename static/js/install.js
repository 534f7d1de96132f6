/* The welcome's "Add the journal to your home screen" step (templates/welcome/step.html, the
   only page that loads this file): the browser's own install prompt, where it offers one
   (`beforeinstallprompt`, Chromium browsers), behind a button the person presses when they
   choose. Safari has no such prompt: the page's written steps stand alone there. */
(() => {
  "use strict";
  const button = document.querySelector("[data-install]");
  const status = document.querySelector("[data-install-status]");
  if (!button || !status) return;
  const { t, ready } = window.kapjournalI18n;

  let offer = null;
  const say = (text) => {
    status.textContent = text;
  };
  const fromHomeScreen = () =>
    window.matchMedia("(display-mode: standalone)").matches || navigator.standalone === true;

  if (fromHomeScreen()) {
    ready.then(() => say(t("You are already using the journal from your home screen.")));
    return;
  }

  window.addEventListener("beforeinstallprompt", (event) => {
    event.preventDefault(); // shown when the button is pressed, not at a moment of its own
    offer = event;
    button.hidden = false;
  });

  button.addEventListener("click", async () => {
    if (!offer) return;
    const shown = offer;
    offer = null;
    button.disabled = true;
    await shown.prompt();
    const choice = await shown.userChoice;
    button.hidden = true;
    button.disabled = false;
    say(choice.outcome === "accepted"
      ? t("Added. You will find the journal on your home screen.")
      : t("Not added. You can do it later from your browser’s menu."));
  });

  window.addEventListener("appinstalled", () => {
    button.hidden = true;
    say(t("Added. You will find the journal on your home screen."));
  });
})();
