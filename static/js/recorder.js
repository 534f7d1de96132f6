/* After the session: record a voice memo in the browser (helper CAPTURE; loaded by offline.js
   where a page has [data-recorder]). MediaRecorder, at most five minutes; the recording becomes
   the form's own file field, so the form sends it as it would a chosen file (and drafts.js
   keeps it, encrypted, in the queue when offline). Nothing is played back from a blob: URL
   (the CSP allows media from this site only); the person hears it on the entry's page. */
const d = document, { t } = window.kapjournalI18n;
const LIMIT_MS = 5 * 60 * 1000;
const TYPES = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];

const minutes = (ms) => {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
};

const chosenType = () =>
  TYPES.find((type) => window.MediaRecorder && MediaRecorder.isTypeSupported(type)) || "";

export function init(root) {
  const form = root.closest("form");
  const input = form && form.querySelector("input[type=file][name=memo]");
  const button = root.querySelector("[data-record]");
  const label = button.querySelector("span");
  const status = root.querySelector("[data-record-status]");
  const again = root.querySelector("[data-record-discard]");
  if (!input || !window.MediaRecorder || !navigator.mediaDevices || !window.DataTransfer) return;
  root.hidden = false;
  let recorder = null, started = 0, timer = 0, stopAt = 0;
  const say = (text) => { status.textContent = text; };

  const keep = (blob) => {
    const type = (blob.type || "audio/webm").split(";")[0];
    const ext = type.includes("mp4") ? "m4a" : type.includes("ogg") ? "ogg" : "webm";
    const list = new DataTransfer();
    list.items.add(new File([blob], `voice-memo.${ext}`, { type }));
    input.files = list.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  };

  const stop = () => {
    clearInterval(timer), clearTimeout(stopAt);
    if (recorder && recorder.state !== "inactive") recorder.stop();
  };

  const start = async () => {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      return say(t("The microphone is not available. You can choose a recording below instead."));
    }
    const chunks = [], type = chosenType();
    recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    recorder.addEventListener("dataavailable", (e) => e.data.size && chunks.push(e.data));
    recorder.addEventListener("stop", () => {
      stream.getTracks().forEach((track) => track.stop());
      const took = Date.now() - started;
      keep(new Blob(chunks, { type: recorder.mimeType || type || "audio/webm" }));
      button.classList.remove("is-recording");
      button.setAttribute("aria-pressed", "false");
      label.textContent = t("Record");
      button.hidden = true;
      again.hidden = false;
      say(t("Recorded %(time)s. It is kept when you tap “Keep it”.", { time: minutes(took) }));
      root.dataset.recorded = "1";
    });
    recorder.start(1000);
    started = Date.now();
    button.classList.add("is-recording");
    button.setAttribute("aria-pressed", "true");
    label.textContent = t("Stop");
    say(t("Recording… %(time)s", { time: "0:00" }));
    timer = setInterval(() => say(t("Recording… %(time)s", { time: minutes(Date.now() - started) })), 1000);
    stopAt = setTimeout(stop, LIMIT_MS); // five minutes at most
  };

  button.addEventListener("click", () => (recorder && recorder.state === "recording" ? stop() : start()));
  again.addEventListener("click", () => {
    input.value = "";
    delete root.dataset.recorded;
    again.hidden = true;
    button.hidden = false;
    say("");
    button.focus();
  });
  form.addEventListener("reset", () => setTimeout(() => again.click()));
}
