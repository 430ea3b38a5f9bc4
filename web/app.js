// The iris-predict web page: builds its form from the function's GET metadata (any
// model it serves: numbers, categories, classification or regression), POSTs one row
// (asking why: ?explain=true) and draws the answer. Plain browser JavaScript, no build step.
"use strict";

const page = {
  title: document.getElementById("title"),
  lead: document.getElementById("lead"),
  form: document.getElementById("row"),
  formHelp: document.getElementById("form-help"),
  fields: document.getElementById("fields"),
  predict: document.getElementById("predict"),
  problem: document.getElementById("problem"),
  problemTitle: document.getElementById("problem-title"),
  problemText: document.getElementById("problem-text"),
  checks: document.getElementById("checks"),
  checkList: document.getElementById("check-list"),
  retry: document.getElementById("retry"),
  result: document.getElementById("result"),
  answerKey: document.getElementById("answer-key"),
  answer: document.getElementById("answer"),
  confidence: document.getElementById("confidence"),
  probabilities: document.getElementById("probabilities"),
  barsTitle: document.getElementById("bars-title"),
  bars: document.getElementById("bars"),
  whyPart: document.getElementById("why-part"),
  whyTitle: document.getElementById("why-title"),
  whyHelp: document.getElementById("why-help"),
  whyLow: document.getElementById("why-low"),
  whyHigh: document.getElementById("why-high"),
  whyCentre: document.getElementById("why-centre"),
  why: document.getElementById("why"),
  warnings: document.getElementById("warnings"),
  warningList: document.getElementById("warning-list"),
  endpoint: document.getElementById("endpoint"),
  modelInfo: document.getElementById("model-info"),
};

// A number as a person types it: digits, one decimal point, an optional exponent.
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
// A decimal comma ("5,1", as European keyboards write it), read as a decimal point.
const DECIMAL_COMMA = /^[+-]?\d*,\d+$/;

/** A failure already put in words a person understands; `detail` is the function's own. */
class Problem extends Error {
  constructor(message, detail = "") {
    super(message);
    this.detail = detail;
  }
}

/**
 * The function's URL: ?api=URL when given (http or https only), else what the page's
 * meta "iris-predict-api" says: "." when the function serves this page itself (its own
 * URL), http://localhost:8080 in web/ as committed.
 */
function apiUrl() {
  const given = new URLSearchParams(window.location.search).get("api");
  if (given === null) {
    const meta = document.querySelector('meta[name="iris-predict-api"]');
    return new URL(meta.content, window.location.href).href;
  }
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
  let response;
  try {
    response = await fetch(api, {
      ...options, cache: "no-store",
      headers: { Accept: "application/json", ...(options.headers || {}),
                 ...(key ? { "x-api-key": key } : {}) },
    });
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
      ? `The service could not use these values: ${reason}.`
      : `The service cannot answer right now (${reason}). Try again later.`, said);
  }
  if (body === null) {
    throw new Problem(`The service at ${api} did not answer in JSON. ` +
                      "Is this the address of an iris-predict function?");
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
    return `Could not reach the service at ${api}. ` +
           "Check that it is running (make serve) and that the address is right.";
  }
  const here = window.location.origin === "null"
    ? "pages opened from a file" : window.location.origin;
  return `The service at ${api} is running, but your browser blocked this page ` +
         `from reading its answers: the service does not accept calls from ${here}. ` +
         "Ask its operator to add this page's origin to ALLOWED_ORIGINS.";
}

/** A feature's name as the form shows it: "sepal_length" is "Sepal length". */
function label(name) {
  const words = name.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function make(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

/** Decimals to show a feature's statistics with: as many as its training values have
 * (model.json's "decimals"; else its min's and max's), so that a year's mean of 1976.0
 * reads 1976, but no more than 5 significant digits of its largest value allow (50.567,
 * not 50.567087155963). */
function decimalsOf(feature) {
  const written = feature.decimals !== undefined ? [feature.decimals]
    : [feature.min, feature.max].map((x) => {
      const text = String(x);
      return text.includes("e") ? 6 : (text.split(".")[1] || "").length;
    });
  const largest = Math.max(Math.abs(feature.min), Math.abs(feature.max));
  const cap = largest > 0 ? Math.max(0, 4 - Math.floor(Math.log10(largest))) : 6;
  return Math.min(Math.max(...written), cap);
}

/** A training statistic of the feature, at its data's precision: 5.8, 1976, 0.1107. */
function brief(x, feature) {
  return String(Number(x.toFixed(decimalsOf(feature))));
}

function withUnit(text, unit) {
  return unit ? `${text} ${unit}` : text;
}

/** What the bounds allow, in words: {"exclusiveMinimum": 0, "maximum": 100} is "> 0 and ≤ 100". */
function allowed(bounds) {
  const words = { minimum: "≥", exclusiveMinimum: ">", maximum: "≤", exclusiveMaximum: "<" };
  return Object.entries(bounds || {}).map(([key, value]) => `${words[key]} ${value}`)
    .join(" and ");
}

function list(words) {
  return words.length > 1
    ? `${words.slice(0, -1).join(", ")} or ${words[words.length - 1]}` : words.join("");
}

/** One labelled input per feature: numbers with their unit, range and bounds; categories
 * with the training categories to pick from (others are answered, with a warning). */
function buildForm(meta) {
  const classifier = meta.task !== "regression";
  page.fields.replaceChildren(...meta.features.map((feature) => {
    const id = `field-${feature.name.replace(/[^A-Za-z0-9_-]/g, "-")}`;
    const wrapper = make("div", "field");
    const caption = make("label", "", label(feature.name) +
                         (feature.unit ? ` (${feature.unit})` : "") +
                         (feature.missing ? " (optional)" : ""));
    caption.htmlFor = id;
    const input = make("input");
    Object.assign(input, {
      id, name: feature.name, type: "text", autocomplete: "off", spellcheck: false,
      required: !feature.missing,
    });
    input.dataset.kind = feature.type === "category" ? "category" : "number";
    input.dataset.unit = feature.unit || "";
    input.setAttribute("aria-describedby", `${id}-hint`);
    input.addEventListener("input", () => input.removeAttribute("aria-invalid"));
    const hint = make("p", "hint");
    hint.id = `${id}-hint`;
    wrapper.append(caption, input, hint);
    if (input.dataset.kind === "category") {
      const categories = Object.keys(feature.categories);
      const choices = make("datalist");
      choices.id = `${id}-choices`;
      choices.append(...categories.map((category) => Object.assign(make("option"),
                                                                   { value: category })));
      input.setAttribute("list", choices.id);
      // The most common one, as a number's placeholder is its mean.
      const common = categories.reduce((a, b) => (feature.categories[b] > feature.categories[a]
        ? b : a));
      input.placeholder = `e.g. ${common}`;
      hint.textContent = `Seen in training: ${categories.join(", ")}`;
      wrapper.append(choices);
    } else {
      input.inputMode = "decimal";
      input.placeholder = `e.g. ${withUnit(brief(feature.mean, feature), feature.unit)}`;
      const bounds = allowed(feature.bounds);
      hint.textContent = `Training data: ${brief(feature.min, feature)}–` +
        withUnit(brief(feature.max, feature), feature.unit) +
        (bounds ? `; allowed: ${bounds}` : "");
    }
    return wrapper;
  }));
  const what = label(meta.target).toLowerCase();
  page.title.textContent = `${label(meta.name)} ${what} predictor`;
  document.title = page.title.textContent;
  page.lead.textContent = classifier
    ? `Enter the features below; the model names the ${what}: ${list(meta.classes)}.`
    : `Enter the features below; the model predicts the ${what}.`;
  page.formHelp.textContent =
    "Values the training data never had still get a prediction, with a warning.";
  page.predict.textContent = `Predict ${what}`;
  page.predict.dataset.label = page.predict.textContent;
  page.predict.disabled = false;
  page.barsTitle.textContent = `Probability of each ${what}`;
  const accuracy = meta.metrics && meta.metrics.cv_accuracy_mean;
  page.modelInfo.textContent = `· model ${meta.name}` + (accuracy
    ? `, accuracy ${(accuracy * 100).toFixed(1)}% (cross-validated)` : "");
}

/** A typed number as JavaScript reads it; a decimal comma is a decimal point. */
function readNumber(input, name) {
  let text = input.value.trim();
  if (DECIMAL_COMMA.test(text)) {
    text = text.replace(",", ".");
    input.value = text;  // shown as it is read: "5,1" is 5.1, never 51
  }
  if (!NUMBER.test(text)) {
    throw new Problem(`The ${name} is not a number: "${input.value.trim()}". ` +
                      "Use digits and one decimal point or comma, e.g. 5.1 or 5,1.");
  }
  return Number(text);
}

/** The form's values as {feature: value}, or a Problem naming every bad field. */
function readRow() {
  const row = {};
  const refused = [];
  const messages = [];
  for (const input of page.fields.querySelectorAll("input")) {
    const name = label(input.name).toLowerCase();
    try {
      if (input.value.trim() === "") {
        if (!input.required) {
          row[input.name] = null;  // missing: the model takes it
          continue;
        }
        const unit = input.dataset.unit ? ` (${input.dataset.unit})` : "";
        throw new Problem(`Enter the ${name}${unit}.`);
      }
      row[input.name] = input.dataset.kind === "category"
        ? input.value.trim() : readNumber(input, name);
    } catch (problem) {
      if (!(problem instanceof Problem)) throw problem;
      refused.push(input);
      messages.push(problem.message);
    }
  }
  if (refused.length) {
    markInvalid(refused);
    throw new Problem(messages.join(" "));
  }
  return row;
}

/** The inputs a message of the function names ("petal_width must be …"), as whole words. */
function named(message) {
  return [...page.fields.querySelectorAll("input")].filter((input) => {
    const word = input.name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp(`(^|[^\\w])${word}([^\\w]|$)`).test(message);
  });
}

/** Flag these fields as invalid (for all users: aria-invalid and a red border), the first
 * of them focused; every other field as valid. */
function markInvalid(inputs) {
  for (const input of page.fields.querySelectorAll("input")) {
    if (inputs.includes(input)) {
      input.setAttribute("aria-invalid", "true");
    } else {
      input.removeAttribute("aria-invalid");
    }
  }
  if (inputs.length) inputs[0].focus();
}

/** A message of the function with feature names as the form's labels call them. */
function inLabels(message) {
  let text = message;
  for (const input of page.fields.querySelectorAll("input")) {
    const word = input.name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    text = text.replace(new RegExp(`(^|[^\\w])${word}(?=[^\\w]|$)`, "g"),
                        (_, before) => before + label(input.name));
  }
  return text;
}

function percent(p) {
  return p > 0 && p < 0.001 ? "<0.1%" : `${(p * 100).toFixed(1)}%`;
}

/** A predicted value, to 6 significant digits. */
function shown(value) {
  return String(Number(value.toPrecision(6)));
}

function showPrediction(answer, meta, row) {
  const classifier = meta.task !== "regression";
  const value = answer[meta.target];
  page.answerKey.textContent = label(meta.target);
  page.answer.textContent = classifier ? value : shown(value);
  page.answer.classList.toggle("class-name", classifier);
  page.probabilities.hidden = !classifier;
  if (classifier) {
    page.confidence.textContent =
      `The model gives it a ${percent(answer.probabilities[value])} probability.`;
    page.bars.replaceChildren(...Object.entries(answer.probabilities).map(([name, p]) => {
      const item = make("li", name === value ? "bar chosen" : "bar");
      const track = make("span", "bar-track");
      track.setAttribute("aria-hidden", "true");  // the percentage beside it says the same
      const fill = make("span", "bar-fill");
      fill.style.width = `${(p * 100).toFixed(2)}%`;
      track.append(fill);
      item.append(make("span", "bar-name", name), track, make("span", "bar-value", percent(p)));
      return item;
    }));
  } else {
    page.confidence.textContent = "";
  }
  page.whyPart.hidden = !answer.explanations;
  if (answer.explanations) {
    showWhy(classifier ? value : shown(value), answer, meta, row, classifier);
  }
  page.warningList.replaceChildren(...answer.warnings.map(
    (warning) => make("li", "", inLabels(warning.message))));
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

/** The scale of the "why" bars: the round number (1, 2, 2.5 or 5 times a power of ten) at
 * or above the largest pull, so that one answer's bars share it and the axis says it. */
function scaleFor(largest) {
  if (!(largest > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(largest));
  const step = [1, 2, 2.5, 5, 10].find((s) => s * power >= largest * (1 - 1e-12));
  return Number((step * power).toPrecision(3));
}

/** What a feature's pull is measured from: its training mean, or the training mix; a tree
 * model's pulls are measured from its expected score, so only the value given is shown. */
function baseline(feature, value, fromAverageRow) {
  if (!fromAverageRow) {
    return value === null ? "missing" : feature.type === "category" ? String(value)
      : withUnit(String(value), feature.unit);
  }
  if (feature.type === "category") {
    return value === null ? "missing vs the training mix" : `${value} vs the training mix`;
  }
  const given = value === null ? "missing" : withUnit(String(value), feature.unit);
  return `${given} vs average ${withUnit(brief(feature.mean, feature), feature.unit)}`;
}

/** The words for what the bars are measured from (the answer's measured_from). */
const REFERENCES = {
  "average training row": {
    centre: "average",
    score: "the average training row's: every number at its training mean, every category " +
      "at its training mix",
    value: "the prediction for the average training row: every number at its training " +
      "mean, every category at its training mix",
  },
  "expected score": {
    centre: "expected",
    score: "the model's expected score, its average over the training data",
    value: "the model's expected prediction, its average over the training data",
  },
};

/**
 * One bar per feature, from the centre line (the answer's base value): rightwards for a
 * pull towards the answer, leftwards for a pull away, all on the one scale the axis shows.
 * The number beside each bar and the words in its label say the same for screen readers.
 */
function showWhy(answer, reply, meta, row, classifier) {
  const explanation = reply.explanations[0];
  const fromAverageRow = reply.measured_from !== "expected score";
  const reference = REFERENCES[reply.measured_from] || REFERENCES["average training row"];
  const base = signed(reply.base_values[0]);
  page.whyTitle.textContent = `Why ${answer}: each feature's pull`;
  page.whyHelp.textContent = classifier
    ? `Each bar is how far a feature moves the model's score for ${answer} ` +
      `from ${reference.score} (${base}). Rightwards pulls towards ` +
      `${answer}, leftwards away from it; all bars share the scale above them.`
    : `Each bar is how far a feature moves the predicted ${label(meta.target).toLowerCase()} ` +
      `from ${reference.value} (${base}). All bars share the scale above them.`;
  const features = new Map(meta.features.map((feature) => [feature.name, feature]));
  const entries = Object.entries(explanation);
  const scale = scaleFor(Math.max(...entries.map(([, c]) => Math.abs(c))));
  page.whyCentre.textContent = reference.centre;
  page.whyLow.textContent = `\u2212${scale}`;
  page.whyHigh.textContent = `+${scale}`;
  page.why.replaceChildren(...entries.map(([name, c]) => {
    const item = make("li", c >= 0 ? "why-bar toward" : "why-bar away");
    const caption = make("span", "why-name", label(name));
    caption.append(make("span", "why-base", baseline(features.get(name), row[name],
                                                     fromAverageRow)));
    const track = make("span", "why-track");
    track.setAttribute("aria-hidden", "true");
    const fill = make("span", "why-fill");
    fill.style.width = `${((Math.abs(c) / scale) * 50).toFixed(2)}%`;
    track.append(fill);
    const number = make("span", "why-value", signed(c));
    const direction = classifier ? (c >= 0 ? ` towards ${answer}` : ` away from ${answer}`)
      : (c >= 0 ? " up" : " down");
    number.append(make("span", "visually-hidden", direction));
    item.append(caption, track, number);
    return item;
  }));
}

/** A problem; when the metadata could not load, with what to check, and the form hidden. */
function showProblem(error, loading = false, api = "") {
  page.problemTitle.textContent = loading
    ? "The page could not load the model's description" : "Something went wrong";
  page.problemText.textContent = error instanceof Problem
    ? error.message : `Unexpected error: ${error.message}`;
  page.checks.hidden = !loading;
  if (loading) {
    page.checkList.replaceChildren(...[
      `The address: this page calls ${api || "(none)"}; to call another service, add ` +
        "?api=URL to this page's address.",
      "The service: is it running (make serve locally), and does its log say it " +
        "loaded its model?",
      "CORS: a page served from another origin than the service's must be listed in the " +
        "service's ALLOWED_ORIGINS.",
      "The network: is this browser online, and can it reach that address?",
    ].map((text) => make("li", "", text)));
  }
  page.form.hidden = loading;
  page.retry.hidden = !loading;
  page.result.hidden = true;
  page.problem.hidden = false;
}

/** The function's URL asking for explanations too. */
function explainUrl(api) {
  const url = new URL(api);
  url.searchParams.set("explain", "true");
  return url.href;
}

/** Predict one row, with explanations where the model has them (linear and tree models). */
async function ask(api, row) {
  const options = { method: "POST", headers: { "Content-Type": "application/json" },
                    body: JSON.stringify(row) };
  try {
    return await callService(explainUrl(api), options);
  } catch (error) {
    if (!(error instanceof Problem) || !/^explanations\b/.test(error.detail)) throw error;
    return callService(api, options);  // a model without exact explanations: answer alone
  }
}

async function onSubmit(event, api, meta) {
  event.preventDefault();
  page.form.setAttribute("aria-busy", "true");
  page.predict.disabled = true;
  page.predict.textContent = "Predicting…";
  try {
    const row = readRow();
    showPrediction(await ask(api, row), meta, row);
    markInvalid([]);
  } catch (error) {
    showProblem(error);
    if (error.detail) markInvalid(named(error.detail));  // only the function's names a field
  } finally {
    page.form.removeAttribute("aria-busy");
    page.predict.disabled = false;
    page.predict.textContent = page.predict.dataset.label;
  }
}

async function start() {
  let api;
  try {
    api = apiUrl();
  } catch (error) {
    showProblem(error, true);
    return;
  }
  page.endpoint.textContent = api;
  let meta = null;
  page.form.addEventListener("submit", (event) => {
    if (meta) onSubmit(event, api, meta);
    else event.preventDefault();
  });
  const load = async () => {
    page.problem.hidden = true;
    page.form.hidden = false;
    try {
      meta = await callService(api);
      if (!Array.isArray(meta.features) || typeof meta.target !== "string") {
        throw new Problem(`The service at ${api} answered, but not with a model's ` +
                          "description. Is this the address of an iris-predict function?");
      }
      buildForm(meta);
    } catch (error) {
      showProblem(error, true, api);
    }
  };
  page.retry.addEventListener("click", load);
  await load();
}

start();
