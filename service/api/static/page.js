// The translation page: plain browser JavaScript over the public API, no build step.
//   GET  /libretranslate/languages          source and target pickers
//   GET  /libretranslate/frontend/settings  apiKeys / keyRequired -> the API key field
//   POST /translate                         short texts, and any text with alternatives
//   POST /translate/stream                  long texts, sentence by sentence (SSE)
//                                           ("Detect language" sends source_lang "auto")
//   POST /libretranslate/translate_file     file upload -> translatedFileUrl
"use strict";

const LONG_TEXT = 200; // characters from which a text is streamed sentence by sentence
const AUTO = "auto";

const $ = (id) => document.getElementById(id);
const page = { languages: [], names: new Map(), detected: null, charLimit: 0 };

/** An API answer that is not a success, with its message in words. */
class ApiFailure extends Error {}

// ---------------------------------------------------------------- requests and errors

function apiKey() {
  return $("api-key").value.trim();
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  return headers;
}

/** The message of an error body: native {"error": {"message"}} or LibreTranslate's
 *  {"error": "..."}; the status line when the body says nothing. */
async function failureOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  const error = body && body.error;
  let message = typeof error === "string" ? error : error && error.message;
  if (!message && body && body.detail) {
    message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  }
  if (!message) message = response.statusText || "the request failed";
  if (response.status === 401 || response.status === 403) showKeyField();
  return new ApiFailure(`Error ${response.status}: ${message}`);
}

/** fetch, with a network failure turned into a sentence. */
async function call(url, options = {}) {
  try {
    return await fetch(url, options);
  } catch (err) {
    throw new ApiFailure(`The server could not be reached (${err.message}).`);
  }
}

async function postJson(url, body) {
  return call(url, {
    method: "POST",
    headers: authHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
}

function showError(id, message) {
  const box = $(id);
  box.textContent = message;
  box.hidden = !message;
}

function showKeyField() {
  const field = $("key-field");
  if (field.hidden) {
    field.hidden = false;
    $("api-key").focus();
  }
}

// ---------------------------------------------------------------- languages

function languageName(code) {
  return page.names.get(code) || code;
}

function option(value, label) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = label;
  return element;
}

/** Targets of the chosen source; every target when the source is detected. */
function targetsOf(source) {
  if (source !== AUTO) {
    const language = page.languages.find((entry) => entry.code === source);
    return language ? language.targets : [];
  }
  return [...new Set(page.languages.flatMap((entry) => entry.targets))].sort();
}

function fillTargets(wanted) {
  const target = $("target");
  const keep = wanted || target.value;
  const codes = targetsOf($("source").value);
  target.replaceChildren(...codes.map((code) => option(code, languageName(code))));
  if (codes.includes(keep)) target.value = keep;
  $("translate-button").disabled = codes.length === 0;
  const from = languageName($("source").value);
  showError("error", codes.length ? "" : `No model translates from ${from}.`);
  updateSwap();
}

function updateSwap() {
  const from = $("source").value === AUTO ? page.detected : $("source").value;
  const to = $("target").value;
  const reverse = page.languages.find((entry) => entry.code === to);
  $("swap").disabled = !(from && reverse && reverse.targets.includes(from));
}

async function loadLanguages() {
  const response = await call("/libretranslate/languages");
  if (!response.ok) throw await failureOf(response);
  page.languages = await response.json();
  page.names = new Map(page.languages.map((entry) => [entry.code, entry.name]));
  const sources = page.languages.filter((entry) => entry.targets.length > 0);
  $("source").replaceChildren(option(AUTO, "Detect language"),
                              ...sources.map((entry) => option(entry.code, entry.name)));
  if (sources.length > 0) $("source").value = sources[0].code;
  fillTargets();
  if (sources.length === 0) {
    showError("error", "The server has no model ready yet: reload the page in a moment.");
  }
}

/** LibreTranslate's frontend settings: the key field, the character limit, file formats. */
async function loadSettings() {
  const response = await call("/libretranslate/frontend/settings");
  if (!response.ok) throw await failureOf(response);
  const settings = await response.json();
  if (settings.apiKeys || settings.keyRequired) $("key-field").hidden = false;
  if (settings.charLimit > 0) page.charLimit = settings.charLimit;
  if (Array.isArray(settings.supportedFilesFormat) && settings.supportedFilesFormat.length) {
    $("file").accept = settings.supportedFilesFormat.join(",");
    $("file-formats").textContent = settings.supportedFilesFormat.join(", ");
  }
  countCharacters();
}

function countCharacters() {
  const count = $("text").value.length;
  const counter = $("char-count");
  counter.textContent = page.charLimit
    ? `${count} of ${page.charLimit} characters` : `${count} characters`;
  counter.classList.toggle("over", page.charLimit > 0 && count > page.charLimit);
}

// ---------------------------------------------------------------- detection

/** The language the server detected for "Detect language" (confidence 0-100, if given). */
function showDetected(language, confidence) {
  page.detected = language;
  const sure = confidence === undefined ? "" : ` (${Math.round(confidence)}%)`;
  $("detected").textContent = `Detected: ${languageName(language)}${sure}`;
  updateSwap();
}

// ---------------------------------------------------------------- translation

function showTranslation(text) {
  $("translation").textContent = text;
  $("copy").disabled = !text;
  $("copy-status").textContent = "";
}

function showAlternatives(texts) {
  $("alternatives").replaceChildren(...texts.map((text) => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
  $("alternatives-box").hidden = texts.length === 0;
}

async function translateOnce(body) {
  const response = await postJson("/translate", body);
  if (!response.ok) throw await failureOf(response);
  const data = await response.json();
  if (data.detected_language) {
    showDetected(data.detected_language.language, data.detected_language.confidence);
  }
  const first = data.translations[0];
  showTranslation(first.text);
  showAlternatives(first.alternatives.slice(1).map((entry) => entry.text));
  return data.model;
}

/** Server-sent events of a fetch response, as {event, data} with data parsed as JSON. */
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event: name, data: JSON.parse(data.join("\n")) };
    }
  }
}

/** Appends a sentence's translation: as it is when either side has the whitespace between
 *  them (events that carry their separators), else after one space. */
function joinSentence(text, sentence) {
  if (!text || !sentence || /\s$/.test(text) || /^\s/.test(sentence)) return text + sentence;
  return `${text} ${sentence}`;
}

/** Streams the translation: each `sentence` event's text appears as it arrives; `done`
 *  replaces them with the server's joined text; `error` ends it with the message. */
async function translateStream(body) {
  const response = await postJson("/translate/stream", body);
  if (!response.ok) throw await failureOf(response);
  const sentences = [];
  let model = null;
  let total = 0;
  for await (const { event, data } of events(response)) {
    if (event === "start") {
      model = data.model;
      total = data.sentences;
      if (body.source_lang === AUTO) showDetected(data.source_lang);
    } else if (event === "sentence") {
      sentences[data.index] = data.text;
      showTranslation(sentences.reduce(joinSentence, ""));
      $("progress").textContent = `${sentences.length} of ${total} sentences translated`;
    } else if (event === "done") {
      showTranslation(data.translations[0]);
      return data.model || model;
    } else if (event === "error") {
      const error = data.error || {};
      throw new ApiFailure(`Error ${data.status}: ${error.message || "the translation failed"}`);
    }
  }
  throw new ApiFailure("The connection closed before the translation was finished.");
}

function number(id, fallback) {
  const value = Number.parseInt($(id).value, 10);
  return Number.isFinite(value) ? value : fallback;
}

function busy(yes) {
  $("translate-button").disabled = yes;
  $("translation").setAttribute("aria-busy", String(yes));
  if (yes) $("progress").textContent = "Translating…";
}

async function translate(event) {
  event.preventDefault();
  showError("error", "");
  const text = $("text").value;
  if (!text.trim()) {
    showError("error", "Type a text to translate first.");
    return;
  }
  const started = performance.now();
  busy(true);
  showTranslation("");
  showAlternatives([]);
  $("meta").textContent = "";
  $("detected").textContent = "";
  page.detected = null;
  try {
    const target = $("target").value;
    const alternatives = number("alternatives-count", 0);
    const body = {
      text, source_lang: $("source").value, target_lang: target,
      num_hypotheses: alternatives + 1,
    };
    const beam = number("beam", null);
    if (beam !== null) body.beam_size = beam; // empty: the server's default beam
    const streamed = alternatives === 0 && text.length >= LONG_TEXT;
    const model = streamed ? await translateStream(body) : await translateOnce(body);
    const seconds = (performance.now() - started) / 1000;
    $("meta").textContent = `Model: ${model} · ${seconds.toFixed(2)} s` +
      (streamed ? " · streamed sentence by sentence" : "");
    $("progress").textContent = "";
  } catch (err) {
    $("progress").textContent = "";
    showError("error", err instanceof ApiFailure ? err.message : `Unexpected error: ${err}`);
  } finally {
    busy(false);
    updateSwap();
  }
}

// ---------------------------------------------------------------- copy and swap

async function copyTranslation() {
  const text = $("translation").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copy-status").textContent = "Copied.";
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents($("translation"));
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    $("copy-status").textContent = "Selected: press Ctrl+C to copy.";
  }
}

function swap() {
  const from = $("source").value === AUTO ? page.detected : $("source").value;
  const to = $("target").value;
  $("source").value = to;
  fillTargets(from);
  const translated = $("translation").textContent;
  if (translated) $("text").value = translated;
  showTranslation("");
  showAlternatives([]);
  countCharacters();
  $("text").focus();
}

// ---------------------------------------------------------------- files

async function translateFile(event) {
  event.preventDefault();
  showError("file-error", "");
  $("file-status").textContent = "";
  const file = $("file").files[0];
  if (!file) {
    showError("file-error", "Choose a file first.");
    return;
  }
  const form = new FormData();
  form.append("file", file);
  form.append("source", $("source").value);
  form.append("target", $("target").value);
  if (apiKey()) form.append("api_key", apiKey());
  $("file-button").disabled = true;
  $("file-status").textContent = "Translating the file…";
  try {
    const response = await call("/libretranslate/translate_file",
                                { method: "POST", headers: authHeaders(), body: form });
    if (!response.ok) throw await failureOf(response);
    const { translatedFileUrl } = await response.json();
    const link = document.createElement("a");
    link.href = translatedFileUrl;
    link.id = "file-link";
    link.download = "";
    link.textContent = `Download the translation of ${file.name}`;
    $("file-status").replaceChildren(link);
  } catch (err) {
    $("file-status").textContent = "";
    showError("file-error", err instanceof ApiFailure ? err.message : `Unexpected error: ${err}`);
  } finally {
    $("file-button").disabled = false;
  }
}

// ---------------------------------------------------------------- start

function bind() {
  $("translate-form").addEventListener("submit", translate);
  $("file-form").addEventListener("submit", translateFile);
  $("source").addEventListener("change", () => { page.detected = null; fillTargets(); });
  $("target").addEventListener("change", updateSwap);
  $("swap").addEventListener("click", swap);
  $("copy").addEventListener("click", copyTranslation);
  $("text").addEventListener("input", countCharacters);
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      $("translate-form").requestSubmit();
    }
  });
}

async function start() {
  bind();
  try {
    await Promise.all([loadLanguages(), loadSettings()]);
  } catch (err) {
    showError("error", err instanceof ApiFailure ? err.message : `Unexpected error: ${err}`);
  }
  document.body.dataset.ready = "true";
}

start();
