// A Node.js client for an iris-predict function: Node 20's built-in fetch, no dependencies.
// It reads the served model's metadata (GET /) and follows it: any model, its features
// (by name or alias), its target, its classes or its regression value.
//
//   import { predict } from "./iris.mjs";
//   const { species, probabilities } = await predict({ sl: 5.1, sw: 3.5, pl: 1.4, pw: 0.2 });

export const DEFAULT_URL = "http://localhost:8080";
const DEFAULT_TIMEOUT_MS = 10_000;
const described = new Map();  // url -> the metadata's promise: one GET per function and process

/** The function refused the request (status 4xx/5xx) or could not be reached (status 0). */
export class IrisError extends Error {
  constructor(message, { status = 0, cause } = {}) {
    super(message, { cause });
    this.name = "IrisError";
    this.status = status;
  }
}

/**
 * The served model's metadata, fetched once per URL: {name, task, target, features,
 * aliases, classes (classifiers), ...} (docs/api.md).
 * @param {object} [options] url, token, apiKey, timeoutMs, as for predict
 */
export function describe(options = {}) {
  const url = options.url ?? DEFAULT_URL;
  if (!described.has(url)) {
    const loading = request("GET", undefined, options);
    loading.catch(() => described.delete(url));  // a failure is not remembered
    described.set(url, loading);
  }
  return described.get(url);
}

/**
 * Predict one row.
 * @param {object} row the features by name or alias, e.g. {sl, sw, pl, pw} for iris
 * @param {object} [options] url (default http://localhost:8080), token (an identity token for
 *   a private deployment), apiKey (an API key, sent as x-api-key, for a deployment behind API
 *   Gateway), timeoutMs (default 10 s), explain (true: each feature's share of the score too)
 * @returns {Promise<object>} {prediction, [target]: label or value, probabilities (classifiers),
 *   warnings}: for iris {species, prediction (the class index), probabilities, warnings}; with
 *   explain, also explanation ({feature: contribution}), baseValue (the score they are
 *   measured from) and measuredFrom ("average training row" or "expected score").
 */
export async function predict(row, options = {}) {
  const meta = await describe(options);
  // The query asks, not the body: a feature may be named "explain".
  const answer = await request("POST", row, options, options.explain);
  return shaped(meta, {
    label: answer[meta.target], prediction: answer.prediction[0],
    probabilities: answer.probabilities, warnings: answer.warnings,
  }, answer, 0);
}

/**
 * Predict many rows in one request.
 * @param {Array<Array|object>} rows each an array of the features in the metadata's order, or
 *   an object as for predict
 * @returns {Promise<Array<object>>} one object as predict returns, in the order of rows; a
 *   warning's row is its index in rows.
 */
export async function predictMany(rows, options = {}) {
  const meta = await describe(options);
  const classifier = meta.task !== "regression";
  const parameters = { ...(classifier ? { probabilities: true } : {}),
                       ...(options.explain ? { explain: true } : {}) };
  const answer = await request("POST", { instances: rows, parameters }, options);
  return answer[meta.target].map((label, i) => shaped(meta, {
    label, prediction: answer.predictions[i], probabilities: answer.probabilities?.[i],
    warnings: answer.warnings.filter((warning) => warning.row === i),
  }, answer, i));
}

/** An answer as this client returns it: the label (or value) under the target's name, and
 * row i's explanation where the function's answer has them. */
function shaped(meta, { label, prediction, probabilities, warnings }, answer, i) {
  return {
    [meta.target]: label, prediction,
    ...(meta.task !== "regression" ? { probabilities } : {}),
    warnings,
    ...(answer.explanations ? { explanation: answer.explanations[i],
                                baseValue: answer.base_values[i],
                                measuredFrom: answer.measured_from } : {}),
  };
}

/** The URL asking for explanations too, its other query parameters kept. */
function explained(url) {
  const asking = new URL(url);
  asking.searchParams.set("explain", "true");
  return asking.href;
}

async function request(method, body, {
  url = DEFAULT_URL, token, apiKey, timeoutMs = DEFAULT_TIMEOUT_MS,
} = {}, explain = false) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  if (apiKey) headers["x-api-key"] = apiKey;
  let response;
  try {
    response = await fetch(explain ? explained(url) : url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const why = error.name === "TimeoutError" ? `no answer within ${timeoutMs} ms`
      : (error.cause?.code ?? error.cause?.message ?? error.message);  // e.g. ECONNREFUSED
    throw new IrisError(`could not reach the iris function at ${url}: ${why}`, { cause: error });
  }
  const text = await response.text();
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = undefined;  // e.g. a proxy's HTML error page: reported by status below
  }
  if (!response.ok) {
    // API Gateway words its refusals (no key, over quota) as {code, message}.
    const message = answer?.error ?? answer?.message ?? `HTTP ${response.status} from ${url}`;
    throw new IrisError(message, { status: response.status });
  }
  if (answer === undefined) {
    throw new IrisError(`the answer from ${url} is not JSON`, { status: response.status });
  }
  return answer;
}
