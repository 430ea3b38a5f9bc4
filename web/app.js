// The iris-predict web page: builds its form from the function's GET metadata,
// POSTs one flower (asking why: ?explain=true) and draws the answer. Plain browser
// JavaScript, no build step.
"use strict";

const DEFAULT_API = "http://localhost:8080";

const page = {
  form: document.getElementById("flower"),
  formHelp: document.getElementById("form-help"),
  fields: document.getElementById("fields"),
  predict: document.getElementById("predict"),
  problem: document.getElementById("problem"),
  problemText: document.getElementById("problem-text"),
  retry: document.getElementById("retry"),
  result: document.getElementById("result"),
  species: document.getElementById("species"),
  confidence: document.getElementById("confidence"),
  bars: document.getElementById("bars"),
  whySpecies: document.getElementById("why-species"),
  why: document.getElementById("why"),
  warnings: document.getElementById("warnings"),
  warningList: document.getElementById("warning-list"),
  endpoint: document.getElementById("endpoint"),
  modelInfo: document.getElementById("model-info"),
};

/** A failure already put in words a person understands; `detail` is the function's own. */
class Problem extends Error {
  constructor(message, detail = "") {
    super(message);
    this.detail = detail;
  }
}

/** The function's URL: ?api=URL when given (http or https only), else the local default. */
function apiUrl() {
  const given = new URLSearchParams(window.location.search).get("api");
  if (given === null) return DEFAULT_API;
  try {
    const url = new URL(given);
    if (url.protocol === "http:" || url.protocol === "https:") return url.href;
  } catch {
    // fall through: not a URL at all
  }
  throw new Problem(`The address given in ?api= is not a web address: "${given}". ` +
                    "Use for example ?api=http://localhost:8080");
}

/**
 * The API key given as ?key=KEY, sent as x-api-key to a function behind API Gateway
 * (docs/gateway.md); "" when there is none. A key in a page is no secret: its referrer
 * restriction says which pages may use it.
 */
function apiKey() {
  return new URLSearchParams(window.location.search).get("key") || "";
}

/** One call to the function; the JSON answer, or a Problem saying what went wrong. */
async function callService(api, options = {}) {
  const key = apiKey();
  const headers = key ? { ...options.headers, "x-api-key": key } : options.headers;
  let response;
  try {
    response = await fetch(api, { ...options, headers, cache: "no-store" });
  } catch {
    throw new Problem(await whyUnreachable(api));
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (e.g. a proxy's error page): explained below by its status
  }
  if (!response.ok) {
    const said = (body && (body.error || body.errorMessage)) || "";
    const reason = said || `HTTP ${response.status}`;
    throw new Problem(response.status < 500
      ? `The service could not use these measurements: ${reason}.`
      : `The service cannot answer right now (${reason}). Try again later.`, said);
  }
  if (body === null) {
    throw new Problem(`The service at ${api} did not answer in JSON. Is this the iris service?`);
  }
  return body;
}

/**
 * fetch() does not say why a call failed. A "no-cors" request to the same URL
 * succeeds (with an unreadable answer) whenever the server answered at all, so
 * it tells a browser's CORS refusal apart from a server that is not there.
 */
async function whyUnreachable(api) {
  try {
    await fetch(api, { mode: "no-cors", cache: "no-store" });
  } catch {
    return `Could not reach the iris service at ${api}. ` +
           "Check that it is running (make serve) and that the address is right.";
  }
  const here = window.location.origin === "null"
    ? "pages opened from a file" : window.location.origin;
  return `The iris service at ${api} is running, but your browser blocked this page ` +
         `from reading its answers: the service does not accept calls from ${here}. ` +
         "Ask its operator to add this page's origin to ALLOWED_ORIGINS.";
}

function label(name) {
  const words = name.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** One labelled number input per feature, with its unit and training range. */
function buildForm(meta) {
  page.fields.replaceChildren(...meta.features.map((feature) => {
    const id = `field-${feature.name}`;
    const wrapper = document.createElement("div");
    wrapper.className = "field";

    const caption = document.createElement("label");
    caption.htmlFor = id;
    caption.textContent = `${label(feature.name)} (${feature.unit})`;

    const input = document.createElement("input");
    Object.assign(input, {
      id, name: feature.name, type: "number", step: "any", inputMode: "decimal",
      autocomplete: "off", required: true,
      placeholder: `e.g. ${((feature.min + feature.max) / 2).toFixed(1)}`,
    });
    input.dataset.unit = feature.unit;
    input.setAttribute("aria-describedby", `${id}-range`);

    const range = document.createElement("p");
    range.id = `${id}-range`;
    range.className = "hint";
    range.textContent = `Training flowers: ${feature.min}–${feature.max} ${feature.unit}`;

    wrapper.append(caption, input, range);
    return wrapper;
  }));
  page.formHelp.textContent =
    "Values outside the training range still get a prediction, with a warning.";
  page.predict.disabled = false;
  const accuracy = meta.metrics && meta.metrics.cv_accuracy_mean;
  page.modelInfo.textContent = accuracy
    ? `· model accuracy ${(accuracy * 100).toFixed(1)}% (cross-validated)` : "";
}

/** The form's values as {feature: number}, or a Problem naming the first bad field. */
function readFlower() {
  const flower = {};
  for (const input of page.fields.querySelectorAll("input")) {
    const name = label(input.name).toLowerCase();
    if (input.validity.badInput) {
      input.focus();
      throw new Problem(`The ${name} is not a number. Use digits and a decimal point, e.g. 5.1.`);
    }
    if (input.value.trim() === "") {
      input.focus();
      throw new Problem(`Enter the ${name} (${input.dataset.unit}).`);
    }
    flower[input.name] = Number(input.value);
  }
  return flower;
}

/** Flag the field the function's message names ("petal_width must be …"), for all users. */
function markInvalid(detail) {
  for (const input of page.fields.querySelectorAll("input")) {
    if (detail.startsWith(`${input.name} `)) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } else {
      input.removeAttribute("aria-invalid");
    }
  }
}

function percent(p) {
  return p > 0 && p < 0.001 ? "<0.1%" : `${(p * 100).toFixed(1)}%`;
}

function showPrediction(answer) {
  page.species.textContent = answer.species;
  const chance = answer.probabilities[answer.species];
  page.confidence.textContent = `The model gives it a ${percent(chance)} probability.`;

  page.bars.replaceChildren(...Object.entries(answer.probabilities).map(([name, p]) => {
    const row = document.createElement("li");
    row.className = name === answer.species ? "bar chosen" : "bar";
    const caption = document.createElement("span");
    caption.className = "bar-name";
    caption.textContent = name;
    const track = document.createElement("span");
    track.className = "bar-track";
    track.setAttribute("aria-hidden", "true");  // the percentage beside it says the same
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${(p * 100).toFixed(2)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = percent(p);
    row.append(caption, track, value);
    return row;
  }));

  showWhy(answer.species, answer.explanations[0]);

  page.warningList.replaceChildren(...answer.warnings.map((warning) => {
    const item = document.createElement("li");
    item.textContent = warning.message;
    return item;
  }));
  page.warnings.hidden = answer.warnings.length === 0;
  page.problem.hidden = true;
  page.result.hidden = false;
}

/** A signed number with two decimals and a real minus sign, as people write it. */
function signed(x) {
  const text = Math.abs(x).toFixed(2);
  if (text === "0.00") return text;
  return x > 0 ? `+${text}` : `\u2212${text}`;
}

/**
 * One bar per measurement, from the centre line: rightwards for a pull towards the
 * species, leftwards for a pull away, the longest reaching the edge. The number
 * beside each bar and the words in its label say the same for screen readers.
 */
function showWhy(species, explanation) {
  page.whySpecies.textContent = species;
  const entries = Object.entries(explanation);
  const largest = Math.max(...entries.map(([, c]) => Math.abs(c))) || 1;
  page.why.replaceChildren(...entries.map(([name, c]) => {
    const row = document.createElement("li");
    row.className = c >= 0 ? "why-bar toward" : "why-bar away";
    const caption = document.createElement("span");
    caption.className = "why-name";
    caption.textContent = label(name);
    const track = document.createElement("span");
    track.className = "why-track";
    track.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = "why-fill";
    fill.style.width = `${((Math.abs(c) / largest) * 50).toFixed(2)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "why-value";
    value.textContent = signed(c);
    const direction = document.createElement("span");
    direction.className = "visually-hidden";
    direction.textContent = c >= 0 ? ` towards ${species}` : ` away from ${species}`;
    value.append(direction);
    row.append(caption, track, value);
    return row;
  }));
}

function showProblem(error, canRetry = false) {
  page.problemText.textContent = error instanceof Problem
    ? error.message : `Unexpected error: ${error.message}`;
  page.retry.hidden = !canRetry;
  page.result.hidden = true;
  page.problem.hidden = false;
}

/** The function's URL asking for explanations too. */
function explainUrl(api) {
  const url = new URL(api);
  url.searchParams.set("explain", "true");
  return url.href;
}

async function onSubmit(event, api) {
  event.preventDefault();
  page.form.setAttribute("aria-busy", "true");
  page.predict.disabled = true;
  page.predict.textContent = "Predicting…";
  try {
    const answer = await callService(explainUrl(api), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(readFlower()),
    });
    showPrediction(answer);
    markInvalid("");
  } catch (error) {
    showProblem(error);
    markInvalid(error.detail || "");  // only the function's own messages name a field
  } finally {
    page.form.removeAttribute("aria-busy");
    page.predict.disabled = false;
    page.predict.textContent = "Predict species";
  }
}

async function start() {
  let api;
  try {
    api = apiUrl();
  } catch (error) {
    showProblem(error);
    return;
  }
  page.endpoint.textContent = api;
  page.form.addEventListener("submit", (event) => onSubmit(event, api));
  const load = async () => {
    page.problem.hidden = true;
    try {
      buildForm(await callService(api));
    } catch (error) {
      page.formHelp.textContent = "The form appears once the service describes its measurements.";
      showProblem(error, true);
    }
  };
  page.retry.addEventListener("click", load);
  await load();
}

start();
