#!/usr/bin/env node
// Classify one iris flower by calling the iris-predict function:
//   node examples/node/cli.mjs --sl 5.1 --sw 3.5 --pl 1.4 --pw 0.2 [--url URL] [--json]
import { parseArgs } from "node:util";

import { DEFAULT_URL, IrisError, predict } from "./iris.mjs";

const USAGE = `usage: node cli.mjs --sl CM --sw CM --pl CM --pw CM [--url URL] [--json]

Prints the predicted species; --json prints the whole answer.
  --sl, --sw, --pl, --pw   sepal length and width, petal length and width, in cm
  --url URL                the function (default ${DEFAULT_URL})
  --token TOKEN            an identity token, for a deployment that is not public
  --api-key KEY            an API key, for a deployment behind API Gateway`;
const FEATURES = ["sl", "sw", "pl", "pw"];

function usageError(message) {
  console.error(`${message}\n\n${USAGE}`);
  process.exit(2);
}

function readArgs() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        ...Object.fromEntries(FEATURES.map((name) => [name, { type: "string" }])),
        url: { type: "string", default: DEFAULT_URL },
        token: { type: "string" },
        "api-key": { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    usageError(`error: ${error.message}`);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const missing = FEATURES.filter((name) => values[name] === undefined);
  if (missing.length) usageError(`error: missing ${missing.map((name) => `--${name}`).join(", ")}`);
  // Numbers as typed; anything else is sent as given so the function names the problem.
  const measurements = Object.fromEntries(FEATURES.map((name) => {
    const text = values[name].trim();
    return [name, text !== "" && Number.isFinite(Number(text)) ? Number(text) : values[name]];
  }));
  return { measurements, url: values.url, token: values.token, apiKey: values["api-key"],
           json: values.json };
}

const { measurements, url, token, apiKey, json } = readArgs();
try {
  const answer = await predict(measurements, { url, token, apiKey });
  if (json) {
    console.log(JSON.stringify(answer, null, 2));
  } else {
    console.log(answer.species);
    for (const warning of answer.warnings) console.error(`warning: ${warning.message}`);
  }
} catch (error) {
  if (!(error instanceof IrisError)) throw error;
  console.error(`error: ${error.message}${error.status ? ` (HTTP ${error.status})` : ""}`);
  process.exit(1);
}
