#!/usr/bin/env node
// Predict one row by calling an iris-predict function; its options are the served model's
// features (from its metadata), by alias or long name, as the Python CLI takes them:
//   node examples/node/cli.mjs --sl 5.1 --sw 3.5 --pl 1.4 --pw 0.2 [--url URL] [--json]
//   node examples/node/cli.mjs --sepal-length 5.1 --sepal-width 3.5 ...
import { parseArgs } from "node:util";

import { DEFAULT_URL, IrisError, describe, predict } from "./iris.mjs";

const COMMON = {
  url: { type: "string", default: DEFAULT_URL },
  token: { type: "string" },
  "api-key": { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
};

/** A feature's long option: "sepal_length" is --sepal-length. */
function long(feature) {
  return feature.name.replace(/[_\s]+/g, "-");
}

/** The option a message names for a feature: its alias if it has one, as the Python CLI. */
function shown(feature) {
  return `--${feature.alias ?? long(feature)}`;
}

function usage(meta) {
  const features = meta ? meta.features : [];
  const synopsis = features.filter((f) => !f.missing)
    .map((f) => `${shown(f)} ${f.type === "category" ? "TEXT" : (f.unit ?? "X").toUpperCase()}`);
  const lines = features.map((f) => {
    const names = [f.alias && `--${f.alias}`, `--${long(f)}`].filter(Boolean).join(", ");
    const what = f.type === "category"
      ? `one of ${Object.keys(f.categories).join(", ")} (others get a warning)`
      : `a number${f.unit ? ` in ${f.unit}` : ""}`;
    return `  ${names.padEnd(30)} ${f.name}: ${what}${f.missing ? " (optional)" : ""}`;
  });
  const target = meta ? `the predicted ${meta.target}` : "the prediction";
  return [`usage: node cli.mjs ${[...synopsis, "[--url URL] [--token TOKEN] [--api-key KEY] [--json]"].join(" ")}`,
    "", `Prints ${target}; --json prints the whole answer.`,
    ...(meta ? lines : ["  (the function's features: its metadata could not be read)"]),
    `  ${"--url URL".padEnd(30)} the function (default ${DEFAULT_URL})`,
    `  ${"--token TOKEN".padEnd(30)} an identity token, for a deployment that is not public`,
    `  ${"--api-key KEY".padEnd(30)} an API key, for a deployment behind API Gateway`,
  ].join("\n");
}

function usageError(message, meta) {
  console.error(`${message}\n\n${usage(meta)}`);
  process.exit(2);
}

function fail(error) {
  if (!(error instanceof IrisError)) throw error;
  console.error(`error: ${error.message}${error.status ? ` (HTTP ${error.status})` : ""}`);
  process.exit(1);
}

/** The options for the features of the model served at the command line's --url. */
async function readArgs(argv) {
  // First only --url, --token, --api-key and --help: the rest depends on the model served there.
  const { values: first } = parseArgs({ args: argv, options: COMMON, strict: false });
  const connection = { url: first.url ?? DEFAULT_URL, token: first.token || undefined,
                       apiKey: first["api-key"] || undefined };
  let meta;
  try {
    meta = await describe(connection);
  } catch (error) {
    if (first.help) usageError(`error: ${error.message}`);
    fail(error);
  }
  const options = { ...COMMON };
  for (const feature of meta.features) {
    options[long(feature)] = { type: "string" };
    if (feature.alias) options[feature.alias] = { type: "string" };
  }
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options }));
  } catch (error) {
    usageError(`error: ${error.message}`, meta);
  }
  if (values.help) {
    console.log(usage(meta));
    process.exit(0);
  }
  const row = {};
  const missing = [];
  for (const feature of meta.features) {
    const given = [feature.alias, long(feature)].filter((name) => name && values[name] !== undefined);
    if (given.length > 1) usageError(`error: ${given.map((n) => `--${n}`).join(" and ")} both ` +
                                     `give ${feature.name}; give it once`, meta);
    if (given.length === 0) {
      if (!feature.missing) missing.push(shown(feature));
      continue;
    }
    const text = values[given[0]];
    // Numbers as typed; anything else is sent as given so the function names the problem.
    row[feature.name] = feature.type !== "category" && text.trim() !== ""
      && Number.isFinite(Number(text)) ? Number(text) : text;
  }
  if (missing.length) usageError(`error: missing ${missing.join(", ")}`, meta);
  // By aliases when every feature has one (the tutorial's request), else by names.
  const body = meta.features.every((f) => f.alias) ? Object.fromEntries(
    meta.features.filter((f) => f.name in row).map((f) => [f.alias, row[f.name]])) : row;
  return { row: body, connection, json: values.json, target: meta.target };
}

const { row, connection, json, target } = await readArgs(process.argv.slice(2));
try {
  const answer = await predict(row, connection);
  if (json) {
    console.log(JSON.stringify(answer, null, 2));
  } else {
    console.log(String(answer[target]));
    for (const warning of answer.warnings) console.error(`warning: ${warning.message}`);
  }
} catch (error) {
  fail(error);
}
