// A Node.js client for the iris-predict function: Node 20's built-in fetch, no dependencies.
//
//   import { predict } from "./iris.mjs";
//   const { species, probabilities } = await predict({ sl: 5.1, sw: 3.5, pl: 1.4, pw: 0.2 });
//   // Behind API Gateway (docs/gateway.md): { url: "https://GATEWAY_HOST", apiKey: "AIza..." }

export const DEFAULT_URL = "http://localhost:8080";
const DEFAULT_TIMEOUT_MS = 10_000;

/** The function refused the request (status 4xx/5xx) or could not be reached (status 0). */
export class IrisError extends Error {
  constructor(message, { status = 0, cause } = {}) {
    super(message, { cause });
    this.name = "IrisError";
    this.status = status;
  }
}

/**
 * Classify one flower.
 * @param {object} measurements {sl, sw, pl, pw} or {sepal_length, sepal_width, petal_length, petal_width}, in cm
 * @param {object} [options] url (default http://localhost:8080), token (an identity token for a
 *   private deployment), apiKey (an API key, sent as x-api-key, for a deployment behind API
 *   Gateway), timeoutMs (default 10 s)
 * @returns {Promise<{species: string, prediction: number, probabilities: object, warnings: object[]}>}
 *   prediction is the class index; warnings list values outside the training range.
 */
export async function predict(measurements, options = {}) {
  const answer = await call(measurements, options);
  return {
    species: answer.species,
    prediction: answer.prediction[0],
    probabilities: answer.probabilities,
    warnings: answer.warnings,
  };
}

/**
 * Classify many flowers in one request.
 * @param {Array<number[]|object>} rows each [sepal_length, sepal_width, petal_length, petal_width] or an object as for predict
 * @returns {Promise<Array<{species: string, prediction: number, probabilities: object, warnings: object[]}>>}
 *   in the order of rows; a warning's row is its index in rows.
 */
export async function predictMany(rows, options = {}) {
  const answer = await call({ instances: rows, parameters: { probabilities: true } }, options);
  return answer.species.map((species, i) => ({
    species,
    prediction: answer.predictions[i],
    probabilities: answer.probabilities[i],
    warnings: answer.warnings.filter((warning) => warning.row === i),
  }));
}

async function call(body, {
  url = DEFAULT_URL, token, apiKey, timeoutMs = DEFAULT_TIMEOUT_MS,
} = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (apiKey) headers["x-api-key"] = apiKey;
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
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
