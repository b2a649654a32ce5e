#!/usr/bin/env node
// Tokenizes the bundled `.adm` files with the TextMate grammar, as VS Code does (vscode-textmate
// on the Oniguruma regex engine), and checks the result:
//
//  1. the committed syntaxes/adm.tmLanguage.json is what scripts/grammar.mjs generates;
//  2. against a port of the real lexer (grammar/src/lexer.rs): every token the lexer sees is
//     scoped as what it is (a name is one TextMate token, `->` the arrow, a string a string, a
//     number its quantity with the unit as a sub-token, `///` a doc comment, a lexical error
//     invalid), and no TextMate token straddles two lexer tokens;
//  3. no token of a valid file is left unscoped, apart from whitespace and the punctuation
//     `{ } ( ) [ ] , : = . < >`, and none is invalid;
//  4. concrete expectations on the examples, the prelude, the corpus and inline snippets: item
//     names, kind names, types, methods, property words, literals.
//
// Run from anywhere: `node editors/vscode/test/tokenize.mjs` (the Rust test
// tests/tests/textmate.rs runs it). `--dump FILE` prints the tokens of FILE instead.
// Exit code 0 when every check holds, 1 with a report of the failures.

import { readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const extDir = resolve(here, "..");
const root = resolve(extDir, "../..");
const require = createRequire(import.meta.url);

let vsctm, oniguruma;
try {
  vsctm = require("vscode-textmate");
  oniguruma = require("vscode-oniguruma");
} catch (err) {
  console.error(`cannot load vscode-textmate / vscode-oniguruma (${err.message.split("\n")[0]})`);
  console.error("run `npm ci --prefix editors/vscode` first");
  process.exit(1);
}
const { grammarJson, grammarPath } = await import("../scripts/grammar.mjs");

// ---- the grammar ---------------------------------------------------------------------------------

const wasm = readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm"));
await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
const registry = new vsctm.Registry({
  onigLib: Promise.resolve({
    createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
    createOnigString: (s) => new oniguruma.OnigString(s),
  }),
  loadGrammar: async (scopeName) =>
    scopeName === "source.adm" ? vsctm.parseRawGrammar(readFileSync(grammarPath, "utf8"), grammarPath) : null,
});
const grammar = await registry.loadGrammar("source.adm");

/** @typedef {{ start: number, end: number, text: string, scopes: string[] }} TmToken */
/** @typedef {{ name: string, lines: string[], tokens: TmToken[][] }} Doc */

/** Tokenizes a whole source, line by line, carrying the rule stack across lines. */
function tokenize(name, source) {
  const lines = source.replace(/^\uFEFF/, "").split(/\r?\n/);
  let stack = vsctm.INITIAL;
  const tokens = lines.map((line) => {
    const r = grammar.tokenizeLine(line, stack);
    stack = r.ruleStack;
    return r.tokens.map((t) => ({
      start: t.startIndex,
      end: Math.min(t.endIndex, line.length),
      text: line.slice(t.startIndex, t.endIndex),
      scopes: t.scopes,
    }));
  });
  return { name, lines, tokens };
}

/** The scopes that say something: all but the root scope and the `meta.*` regions. */
const realScopes = (scopes) => scopes.filter((s) => s !== "source.adm" && !s.startsWith("meta."));
/** `scopes` holds `want` or a more specific scope under it (`keyword.declaration` ⊒ `keyword.declaration.adm`). */
const has = (scopes, want) => scopes.some((s) => s === want || s.startsWith(want + "."));
const fmtScopes = (scopes) => realScopes(scopes).join(" ") || "(unscoped)";

// ---- a port of the lexer (grammar/src/lexer.rs) ---------------------------------------------------

const RAW = [
  ["comment", /\/\/[^\n]*/y],
  ["ident", /[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*/y],
  ["number", /[0-9]+(?:\.[0-9]+)?(?:[A-Za-z%]+|\/[A-Za-z]+)?/y],
  ["string", /"(?:[^"\\\n]|\\[^\n])*"/y],
  ["unterminated", /"(?:[^"\\\n]|\\[^\n])*\\?/y],
  ["punct", /->|[{}()[\],:=.*<>]/y],
];
const KEYWORDS = new Set(["app", "service", "group", "call", "kind", "enum", "policy", "on", "at", "external", "true", "false"]);

/** The number classes of `number()`. Overflow (E0004 "too large") is not modelled: a regex cannot
 *  compare magnitudes, so the grammar colours `99999999999999999999999` as an integer. */
function classifyNumber(text) {
  const digitsEnd = text.search(/[^0-9.]/);
  const num = digitsEnd < 0 ? text : text.slice(0, digitsEnd);
  const unit = digitsEnd < 0 ? "" : text.slice(digitsEnd);
  const frac = num.includes(".") ? num.split(".")[1] : null;
  if (unit === "%") return (frac ?? "").length > 9 ? { kind: "error" } : { kind: "percent", unit };
  if (frac !== null) return { kind: "error" };
  if (unit === "") return { kind: "integer" };
  if (["us", "ms", "s", "m", "h"].includes(unit)) return { kind: "duration", unit };
  if (["/s", "/m", "/h"].includes(unit)) return { kind: "rate", unit };
  if (["B", "KB", "MB", "GB"].includes(unit)) return { kind: "size", unit };
  return { kind: "error" };
}

/** `unescape()`: the spans (in `body`) of the escapes, and of the first bad one, if any. */
function escapes(body) {
  const spans = [];
  for (let i = 0; i < body.length; i++) {
    if (body[i] !== "\\") continue;
    const e = body[i + 1];
    if (e === undefined) return { spans, error: [i, i + 1] };
    if ('"\\nrt0'.includes(e)) {
      spans.push([i, i + 2]);
      i += 1;
      continue;
    }
    if (e === "u") {
      const rest = body.slice(i + 2);
      const close = rest.indexOf("}");
      if (!rest.startsWith("{") || close < 0) return { spans, error: [i, i + 2] };
      const hex = rest.slice(1, close);
      const len = 2 + hex.length + 2;
      // Rust's u32::from_str_radix, minus the leading `+` it tolerates (see the README).
      const value = /^[0-9A-Fa-f]{1,6}$/.test(hex) ? parseInt(hex, 16) : -1;
      if (value < 0 || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) return { spans, error: [i, i + len] };
      spans.push([i, i + len]);
      i += len - 1;
      continue;
    }
    return { spans, error: [i, i + 1 + String.fromCodePoint(body.codePointAt(i + 1)).length] };
  }
  return { spans, error: null };
}

/** The lexer's tokens of one line (no token spans two lines). */
function lexLine(line) {
  const out = [];
  let pos = 0;
  while (pos < line.length) {
    const ws = /[ \t\r\n\f]+/y;
    ws.lastIndex = pos;
    if (ws.exec(line)) {
      pos = ws.lastIndex;
      continue;
    }
    let best = null;
    for (const [kind, re] of RAW) {
      re.lastIndex = pos;
      const m = re.exec(line);
      if (m && (!best || m[0].length > best.text.length)) best = { kind, text: m[0] };
    }
    if (!best) best = { kind: "error", text: String.fromCodePoint(line.codePointAt(pos)) };
    const tok = { ...best, start: pos, end: pos + best.text.length };
    if (tok.kind === "comment") tok.kind = /^\/\/\/(?!\/)/.test(tok.text) ? "doc" : "comment";
    if (tok.kind === "ident" && KEYWORDS.has(tok.text)) tok.kind = "keyword";
    if (tok.kind === "number") {
      const { kind, unit } = classifyNumber(tok.text);
      Object.assign(tok, { quantity: kind, unit });
    }
    if (tok.kind === "string") tok.escapes = escapes(tok.text.slice(1, -1));
    out.push(tok);
    pos = tok.end;
  }
  return out;
}

// ---- checks -----------------------------------------------------------------------------------------

const failures = [];
const where = (doc, line, col) => `${doc.name}:${line + 1}:${col + 1}`;
function fail(doc, line, col, msg) {
  failures.push(`${where(doc, line, col)}: ${msg}\n    | ${doc.lines[line]}`);
}
const describe = (toks) => toks.map((t) => `\`${t.text}\` [${fmtScopes(t.scopes)}]`).join(", ");

/** The TextMate tokens of a line that overlap [start, end), whitespace-only ones left out. */
function overlapping(doc, line, start, end) {
  return doc.tokens[line].filter((t) => t.start < end && t.end > start && t.text.trim() !== "");
}
/** Every TextMate token over [start, end) has a scope under one of `wants`. */
function allHave(doc, line, start, end, ...wants) {
  const toks = overlapping(doc, line, start, end);
  return toks.length > 0 && toks.every((t) => wants.some((w) => has(t.scopes, w)));
}

/** Check 2: the grammar agrees with the lexer on every token of the file. */
function checkAgainstLexer(doc) {
  doc.lines.forEach((text, line) => {
    for (const lt of lexLine(text)) {
      const toks = overlapping(doc, line, lt.start, lt.end);
      const span = `\`${lt.text}\``;
      const bad = (msg) => fail(doc, line, lt.start, `${span} (${lt.kind}${lt.quantity ? " " + lt.quantity : ""}): ${msg}; got ${describe(toks)}`);
      // No TextMate token may reach past the lexer token, except over whitespace.
      const straddles = toks.filter((t) => {
        const before = text.slice(t.start, Math.max(t.start, lt.start));
        const after = text.slice(Math.min(t.end, lt.end), t.end);
        return before.trim() !== "" || after.trim() !== "";
      });
      if (straddles.length) {
        bad("a TextMate token straddles this token and the next");
        continue;
      }
      const every = (...wants) => allHave(doc, line, lt.start, lt.end, ...wants);
      switch (lt.kind) {
        case "doc":
          if (!every("comment.line.documentation.adm")) bad("expected a doc comment");
          break;
        case "comment":
          if (!every("comment.line.double-slash.adm")) bad("expected a comment");
          break;
        case "ident": {
          const t = toks[0];
          if (toks.length !== 1 || t.text.trim() !== lt.text) bad("a name must be one token");
          else if (realScopes(t.scopes).length === 0) bad("a name must be scoped");
          else if (["keyword", "comment", "string", "constant.numeric", "invalid"].some((s) => has(t.scopes, s)))
            bad("a name scoped as something else");
          break;
        }
        case "keyword": {
          const ok = {
            on: ["keyword.control.adm"],
            at: ["keyword.control.adm"],
            true: ["constant.language.boolean.adm"],
            false: ["constant.language.boolean.adm"],
            // An endpoint, or the service field `external:`.
            external: ["variable.language.external.adm", "support.type.property-name.adm"],
            // A parameter type in a kind.
            service: ["keyword.declaration.adm", "support.type.adm"],
          }[lt.text] ?? ["keyword.declaration.adm"];
          if (toks.length !== 1 || !every(...ok)) bad(`expected one token scoped ${ok.join(" or ")}`);
          break;
        }
        case "number":
          if (lt.quantity === "error") {
            if (!every("invalid.illegal")) bad("expected an invalid number");
          } else if (!every(`constant.numeric.${lt.quantity}.adm`)) {
            bad(`expected constant.numeric.${lt.quantity}.adm`);
          } else if (lt.unit) {
            const u = lt.end - lt.unit.length;
            const unit = toks.filter((t) => t.start >= u);
            if (unit.length !== 1 || unit[0].start !== u || !has(unit[0].scopes, "keyword.other.unit.adm"))
              bad(`expected the unit \`${lt.unit}\` as one keyword.other.unit.adm token`);
            if (toks.some((t) => t.start < u && t.end > u)) bad("the unit is not a token of its own");
          }
          break;
        case "string": {
          if (!every("string.quoted.double.adm")) bad("expected a string");
          const { spans, error } = lt.escapes;
          for (const [s, e] of spans)
            if (!allHave(doc, line, lt.start + 1 + s, lt.start + 1 + e, "constant.character.escape.adm"))
              bad(`expected the escape \`${lt.text.slice(1 + s, 1 + e)}\` as constant.character.escape.adm`);
          if (error && !allHave(doc, line, lt.start + 1 + error[0], lt.start + 1 + error[1], "invalid.illegal"))
            bad(`expected the bad escape \`${lt.text.slice(1 + error[0], 1 + error[1])}\` as invalid.illegal`);
          break;
        }
        case "unterminated":
          if (!every("invalid.illegal")) bad("expected an unterminated string to be invalid");
          break;
        case "punct":
          if (lt.text === "->" && !every("keyword.operator.arrow.adm")) bad("expected the arrow");
          else if (lt.text === "*" && !every("variable.language.wildcard.adm")) bad("expected the wildcard");
          else if (toks.some((t) => ["comment", "string", "invalid"].some((s) => has(t.scopes, s)))) bad("punctuation scoped as something else");
          break;
        case "error":
          if (!every("invalid.illegal")) bad("expected an invalid character");
          break;
      }
    }
  });
}

/** Check 3: nothing but whitespace and plain punctuation is left unscoped, and nothing is invalid. */
const PLAIN_PUNCTUATION = /^[{}()[\],:=.<>]+$/;
function checkFullyScoped(doc) {
  const unscoped = [];
  doc.tokens.forEach((toks, line) => {
    for (const t of toks) {
      const text = t.text.trim();
      if (text === "") continue;
      if (has(t.scopes, "invalid")) fail(doc, line, t.start, `\`${text}\` is invalid in a valid file: ${fmtScopes(t.scopes)}`);
      if (realScopes(t.scopes).length === 0 && !PLAIN_PUNCTUATION.test(text)) unscoped.push(`${where(doc, line, t.start)} \`${text}\``);
    }
  });
  if (unscoped.length) failures.push(`${doc.name}: ${unscoped.length} unscoped token(s):\n    ${unscoped.join("\n    ")}`);
}

/** Where `needle` is: its `nth` occurrence (from 0) from the start of `context` in the first line
 *  containing `context`, as a whole word when it starts or ends with a name character. */
function locate(doc, context, needle, nth = 0) {
  const line = doc.lines.findIndex((l) => l.includes(context));
  if (line < 0) {
    failures.push(`${doc.name}: no line contains \`${context}\``);
    return null;
  }
  const text = doc.lines[line];
  // A needle that starts and ends like a name must not be part of a longer name.
  const wordy = /^[A-Za-z0-9_]/.test(needle) && /[A-Za-z0-9_]$/.test(needle);
  let from = text.indexOf(context);
  for (let seen = 0; ; from += 1) {
    const start = text.indexOf(needle, from);
    if (start < 0) {
      fail(doc, line, 0, `no \`${needle}\` (occurrence ${nth}) after \`${context}\``);
      return null;
    }
    from = start;
    const inName =
      /(?:[A-Za-z0-9_]|[A-Za-z0-9_]-)$/.test(text.slice(0, start)) ||
      /^(?:[A-Za-z0-9_]|-[A-Za-z0-9_])/.test(text.slice(start + needle.length));
    if (wordy && inName) continue;
    if (seen++ === nth) return { line, start, end: start + needle.length };
  }
}

/** Check 4: `needle` (see `locate`) is one TextMate token (or, with `parts`, exactly those
 *  tokens), each carrying `scope` (unless `scope` is null) and not `not`. */
function expect(doc, context, needle, scope, { nth = 0, parts = null, not = null } = {}) {
  const at = locate(doc, context, needle, nth);
  if (!at) return;
  const { line, start, end } = at;
  const toks = overlapping(doc, line, start, end);
  const got = describe(toks);
  const aligned = toks.length > 0 && toks[0].start === start && toks.at(-1).end === end;
  if (!aligned) return fail(doc, line, start, `\`${needle}\` is not made of whole tokens; got ${got}`);
  if (parts ? toks.map((t) => t.text).join("|") !== parts.join("|") : toks.length !== 1)
    return fail(doc, line, start, `\`${needle}\` should be ${parts ? parts.map((p) => `\`${p}\``).join(" ") : "one token"}; got ${got}`);
  if (scope && !toks.every((t) => has(t.scopes, scope))) return fail(doc, line, start, `\`${needle}\` should be ${scope}; got ${got}`);
  if (not && toks.some((t) => has(t.scopes, not))) fail(doc, line, start, `\`${needle}\` should not be ${not}; got ${got}`);
}
/** A number with a unit: the whole is `constant.numeric.<quantity>.adm`, the unit a sub-token. */
function expectNumber(doc, context, literal, quantity, unit) {
  const value = literal.slice(0, literal.length - unit.length);
  expect(doc, context, literal, `constant.numeric.${quantity}.adm`, { parts: [value, unit] });
  const at = locate(doc, context, literal);
  if (!at) return;
  const toks = overlapping(doc, at.line, at.start + value.length, at.end);
  if (toks.length !== 1 || !has(toks[0].scopes, "keyword.other.unit.adm"))
    fail(doc, at.line, at.start, `the unit \`${unit}\` of \`${literal}\` should be keyword.other.unit.adm; got ${describe(toks)}`);
}

// ---- the files ----------------------------------------------------------------------------------------

function admFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir).sort()) {
    if (entry.startsWith(".")) continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...admFiles(path));
    else if (entry.endsWith(".adm")) out.push(path);
  }
  return out;
}
const load = (path) => tokenize(relative(root, path), readFileSync(path, "utf8"));

if (process.argv[2] === "--dump") {
  const doc = load(resolve(process.argv[3]));
  doc.tokens.forEach((toks, i) => {
    console.log(`${i + 1}: ${doc.lines[i]}`);
    for (const t of toks) if (t.text.trim()) console.log(`    ${JSON.stringify(t.text).padEnd(28)} ${fmtScopes(t.scopes)}`);
  });
  process.exit(0);
}

// 1. The committed grammar is the generated one.
if (readFileSync(grammarPath, "utf8") !== grammarJson())
  failures.push("syntaxes/adm.tmLanguage.json is not what scripts/grammar.mjs generates: run `npm run build:grammar --prefix editors/vscode`");

// Valid programs: every check. Files with errors: only the agreement with the lexer, which makes
// the grammar mark each lexical error (bad characters, escapes, numbers, unterminated strings).
const validFiles = [
  ...admFiles(join(root, "examples")),
  join(root, "compiler/src/prelude.adm"),
  ...admFiles(join(root, "tests/corpus/ok")),
  ...admFiles(join(root, "tests/corpus/fmt")),
];
const errorFiles = existsSync(join(root, "tests/corpus/err")) ? admFiles(join(root, "tests/corpus/err")) : [];
const docs = new Map();
for (const path of validFiles) {
  const doc = load(path);
  docs.set(doc.name, doc);
  checkAgainstLexer(doc);
  checkFullyScoped(doc);
}
for (const path of errorFiles) checkAgainstLexer(load(path));

const doc = (name) => {
  const d = docs.get(name);
  if (!d) throw new Error(`${name} is not among the tokenized files`);
  return d;
};

// 4. Concrete expectations.
{
  const services = doc("examples/hotel-reservation/services.adm");
  expect(services, "app hotel_reservation", "app", "keyword.declaration.adm");
  expect(services, "app hotel_reservation", "hotel_reservation", "entity.name.namespace.app.adm");
  expect(services, "/// The HTTP entry point.", "/// The HTTP entry point. Serves the site and the JSON API (`/hotels`, `/recommendations`, `/user`,", "comment.line.documentation.adm", { parts: ["///", " The HTTP entry point. Serves the site and the JSON API (`/hotels`, `/recommendations`, `/user`,"] });
  expect(services, "// The gRPC tier.", "// The gRPC tier.", "comment.line.double-slash.adm", { parts: ["//", " The gRPC tier."] });
  expect(services, "service mongodb-rate {", "service", "keyword.declaration.adm");
  expect(services, "service mongodb-rate {", "mongodb-rate", "entity.name.type.service.adm");
  expect(services, "service rate {", "rate", "entity.name.type.service.adm", { not: "support.type" });
  expect(services, "service frontend {", "protocol", "support.type.property-name.adm");
  expect(services, "service frontend {", "http", "support.constant.protocol.adm");
  expect(services, "service frontend {", "5000", "constant.numeric.integer.adm");
  expect(services, "service frontend {", "external", "support.type.property-name.adm");
  expect(services, "service frontend {", "ingress", "support.constant.side.adm");
  expect(services, "service profile {", "replicas", "support.type.property-name.adm");
  expect(services, "group databases", "group", "keyword.declaration.adm");
  expect(services, "group databases", "databases", "entity.name.type.group.adm");
  expect(services, "  mongodb-rate,", "mongodb-rate", "variable.other.service.adm");
  expect(services, "group read_only", "recommendation", "variable.other.service.adm");

  const calls = doc("examples/hotel-reservation/calls.adm");
  expect(calls, "call frontend -> search {", "call", "keyword.declaration.adm");
  expect(calls, "call frontend -> search {", "frontend", "variable.other.service.adm");
  expect(calls, "call frontend -> search {", "->", "keyword.operator.arrow.adm");
  expect(calls, "call frontend -> search {", "methods", "support.type.property-name.adm");
  expect(calls, "call frontend -> search {", "Nearby", "entity.name.function.method.adm");
  expect(calls, "call frontend -> search {", "rate", "support.type.property-name.adm", { nth: 0, not: "support.type.adm" });
  expectNumber(calls, "call frontend -> search {", "600/s", "rate", "/s");
  expect(calls, "call search -> rate {", "rate", "variable.other.service.adm");
  expect(calls, "call rate -> mongodb-rate {", "mongodb-rate", "variable.other.service.adm");
  expect(calls, "call rate -> mongodb-rate {", "rate", "variable.other.service.adm");
  expect(calls, "call frontend -> reservation {", "CheckAvailability", "entity.name.function.method.adm");
  expect(calls, "call reservation -> memcached-reserve", "// 2 multi-gets per request", "comment.line.double-slash.adm", { parts: ["//", " 2 multi-gets per request"] });

  const policies = doc("examples/hotel-reservation/policies.adm");
  const dbGuard = "policy db_guard = rate_limit(limit: 5000/s, burst: 1000) on * -> databases";
  expect(policies, dbGuard, "policy", "keyword.declaration.adm");
  expect(policies, dbGuard, "db_guard", "entity.name.function.policy.adm");
  expect(policies, dbGuard, "rate_limit", "support.function.kind.adm");
  expect(policies, dbGuard, "limit", "variable.parameter.adm");
  expectNumber(policies, dbGuard, "5000/s", "rate", "/s");
  expect(policies, dbGuard, "1000", "constant.numeric.integer.adm");
  expect(policies, dbGuard, "on", "keyword.control.adm");
  expect(policies, dbGuard, "*", "variable.language.wildcard.adm");
  expect(policies, dbGuard, "->", "keyword.operator.arrow.adm");
  expect(policies, dbGuard, "databases", "variable.other.service.adm");
  expect(policies, "policy edge_limit", "external", "variable.language.external.adm");
  expect(policies, "policy edge_no_debug", '"jaeger-debug-id"', "string.quoted.double.adm", { parts: ['"', "jaeger-debug-id", '"'] });
  expectNumber(policies, "policy edge_log", "1%", "percent", "%");
  expectNumber(policies, "policy read_deadline", "300ms", "duration", "ms");
  expectNumber(policies, "policy recommendation_probe", "0.1%", "percent", "%");
  expect(policies, "  on frontend -> read_only, frontend -> reservation.CheckAvailability", "on", "keyword.control.adm");
  expect(policies, "  on frontend -> read_only, frontend -> reservation.CheckAvailability", "read_only", "variable.other.service.adm");
  expect(policies, "  on frontend -> read_only, frontend -> reservation.CheckAvailability", "CheckAvailability", "entity.name.function.method.adm");
  expect(policies, "policy edge_no_deregister", "ServiceDeregister", "entity.name.function.method.adm");
  expect(policies, "policy frontend_breaker", "circuit_breaker", "support.function.kind.adm");
  expect(policies, "policy profile_lb", "least_request", "variable.other.adm");
  expect(policies, "policy rate_stores", "memcached-rate", "variable.other.service.adm");
  expect(policies, "  at ingress", "at", "keyword.control.adm");
  expect(policies, "  at ingress", "ingress", "support.constant.side.adm");
  expect(policies, "// policy geo_slow", "// policy geo_slow = fault(delay: 50ms, delay_percent: 1%) on search -> geo", "comment.line.double-slash.adm", { parts: ["//", " policy geo_slow = fault(delay: 50ms, delay_percent: 1%) on search -> geo"] });

  const bookinfo = doc("examples/bookinfo/bookinfo.adm");
  expect(bookinfo, "policy reviews_lb", "load_balance", "support.function.kind.adm");
  expect(bookinfo, "policy reviews_lb", "random", "variable.other.adm");
  expectNumber(bookinfo, "policy ratings_retry", "2s", "duration", "s");
  expectNumber(doc("examples/bookinfo/faults.adm"), "policy ratings_test_delay", "7s", "duration", "s");

  const prelude = doc("compiler/src/prelude.adm");
  expect(prelude, "enum lb {", "enum", "keyword.declaration.adm");
  expect(prelude, "enum lb {", "lb", "entity.name.type.enum.adm");
  expect(prelude, "enum lb {", "least_request", "variable.other.enummember.adm");
  expect(prelude, "kind allow(from: list<service>)", "kind", "keyword.declaration.adm");
  expect(prelude, "kind allow(from: list<service>)", "allow", "entity.name.function.kind.adm");
  expect(prelude, "kind allow(from: list<service>)", "from", "variable.parameter.adm");
  expect(prelude, "kind allow(from: list<service>)", "list", "support.type.adm");
  expect(prelude, "kind allow(from: list<service>)", "service", "support.type.adm", { not: "keyword" });
  const retry = "kind retry(attempts: int, per_try_timeout: duration, retry_on: list<int> = [502, 503, 504])";
  for (const type of ["int", "duration"]) expect(prelude, retry, type, "support.type.adm");
  expect(prelude, retry, "retry_on", "variable.parameter.adm");
  expect(prelude, retry, "502", "constant.numeric.integer.adm");
  expect(prelude, "kind rate_limit(limit: rate, burst: int = 0)", "rate", "support.type.adm");
  expect(prelude, "kind load_balance(algorithm: lb = round_robin)", "lb", "entity.name.type.adm");
  expect(prelude, "kind load_balance(algorithm: lb = round_robin)", "round_robin", "variable.other.adm");
  expect(prelude, "kind mirror(to: service, percent: percent = 100%)", "percent", "support.type.adm", { nth: 1 });
  expectNumber(prelude, "kind mirror(to: service, percent: percent = 100%)", "100%", "percent", "%");
  expect(prelude, "  abort: percent = 0%,", "percent", "support.type.adm");
  expectNumber(prelude, "  delay: duration = 0ms,", "0ms", "duration", "ms");
  expect(prelude, "  placement: either,", "placement", "support.type.property-name.kind.adm");
  expect(prelude, "  placement: either,", "either", "support.constant.property-value.adm");
  expect(prelude, "  state: per_receiver,", "per_receiver", "support.constant.property-value.adm");
  expect(prelude, "  reads: [source],", "source", "support.constant.property-value.adm");
  expect(prelude, "  writes: [outcome],", "writes", "support.type.property-name.kind.adm");
  expect(prelude, "  writes: [header(name)],", "header", "support.function.header.adm");
  expect(prelude, "  writes: [header(name)],", "name", "variable.parameter.adm");
  expect(prelude, "  exclusive: true,", "true", "constant.language.boolean.adm");
  expect(prelude, "  positive: [attempts, per_try_timeout],", "per_try_timeout", "variable.parameter.adm");
  expect(prelude, 'kind require_header(name: string, value: string = "")', "string", "support.type.adm");
  expect(prelude, 'kind require_header(name: string, value: string = "")', '""', "string.quoted.double.adm", { parts: ['"', '"'] });

  const kinds = doc("tests/corpus/ok/declared-kinds.adm");
  const quota = 'kind tenant_quota(tier: tier = bronze, header: string = "x-tenant", window: duration = 1s)';
  expect(kinds, quota, "tenant_quota", "entity.name.function.kind.adm");
  expect(kinds, quota, "tier", "entity.name.type.adm", { nth: 1 });
  expect(kinds, "  reads: [header(header)],", "header", "variable.parameter.adm", { nth: 1 });
  expect(kinds, '  writes: [header("x-release")],', '"x-release"', "string.quoted.double.adm", { parts: ['"', "x-release", '"'] });
  expect(kinds, "policy edge_quota = tenant_quota()", "tenant_quota", "entity.name.function.kind.adm");
  expect(kinds, "policy quota = tenant_quota(tier: gold", "gold", "variable.other.adm");
  expectNumber(kinds, "call frontend -> search {", "800/s", "rate", "/s");

  const sel = doc("tests/corpus/ok/selectors-groups-methods.adm");
  expect(sel, "on frontend -> reservation.{MakeReservation, CancelReservation}", "MakeReservation", "entity.name.function.method.adm");
  expect(sel, "on frontend -> reservation.{MakeReservation, CancelReservation}", "CancelReservation", "entity.name.function.method.adm");
  expect(sel, "  methods: [MakeReservation, CheckAvailability, CancelReservation],", "CancelReservation", "entity.name.function.method.adm");
  expect(sel, "rate -> mongodb-rate.{find, aggregate}", "aggregate", "entity.name.function.method.adm");
  expect(sel, "  rate: 10/s,", "rate", "support.type.property-name.adm");

  const s2 = doc("tests/corpus/ok/selectors.adm");
  expect(s2, "service b-2 {", "b-2", "entity.name.type.service.adm");
  expect(s2, "policy p3", "egress", "support.constant.side.adm");
  expect(s2, "policy p2", "external", "variable.language.external.adm");

  expect(doc("tests/corpus/fmt/literals.adm"), '"tab\\there', "\\t", "constant.character.escape.adm");
  expect(doc("tests/corpus/fmt/literals.adm"), '"tab\\there', "\\u{1F600}", "constant.character.escape.adm");
  expect(doc("tests/corpus/fmt/literals.adm"), "z: size = 4KB", "4KB", "constant.numeric.size.adm", { parts: ["4", "KB"] });
}

// Inline snippets: what the files above do not show. Each is also checked against the lexer.
{
  const snippet = (name, source) => {
    const d = tokenize(`<${name}>`, source);
    checkAgainstLexer(d);
    return d;
  };
  const arrows = snippet("arrows", "call search->geo\ncall search-geo -> a-b->c\nservice on-call { port: 1 }\n");
  expect(arrows, "call search->geo", "search->geo", null, { parts: ["search", "->", "geo"], not: "invalid" });
  expect(arrows, "call search->geo", "search", "variable.other.service.adm");
  expect(arrows, "call search->geo", "geo", "variable.other.service.adm");
  expect(arrows, "call search->geo", "->", "keyword.operator.arrow.adm");
  expect(arrows, "call search-geo", "search-geo", "variable.other.service.adm");
  expect(arrows, "call search-geo", "a-b", "variable.other.service.adm");
  expect(arrows, "service on-call", "on-call", "entity.name.type.service.adm");

  const lits = snippet(
    "literals",
    "kind k(a: duration = 250ms, b: duration = 2s, c: duration = 1m, d: duration = 1h, e: duration = 100us,\n" +
      "  f: rate = 100/s, g: rate = 6000/m, h: rate = 10/h, i: percent = 12.5%, j: size = 4KB, k: size = 512B,\n" +
      "  l: size = 1MB, m: size = 1GB, n: duration = 1ms, o: int = 42) { placement: either, state: none }\n",
  );
  for (const [lit, q, unit] of [
    ["250ms", "duration", "ms"], ["2s", "duration", "s"], ["1m", "duration", "m"], ["1h", "duration", "h"],
    ["100us", "duration", "us"], ["100/s", "rate", "/s"], ["6000/m", "rate", "/m"], ["10/h", "rate", "/h"],
    ["12.5%", "percent", "%"], ["4KB", "size", "KB"], ["512B", "size", "B"], ["1MB", "size", "MB"],
    ["1GB", "size", "GB"], ["1ms", "duration", "ms"],
  ])
    expectNumber(lits, `= ${lit}`, lit, q, unit);
  expect(lits, "o: int = 42", "42", "constant.numeric.integer.adm");

  const bad = snippet(
    "bad literals",
    "policy p = fault(a: 5sec, b: 10/min, c: 1.5s, d: 2S, e: 4kb, f: 1.0000000001%, g: 7.) on a -> b\n" +
      'policy q = set_header(name: "\\q", value: "\\u1234", x: "\\u{110000}", y: "\\u{D800}", z: "\\u{0000041}") on a -> b\n' +
      'policy r = require_header(name: "x-api-key) on external -> a\n' +
      "service s { port: 80 $ } //// four slashes: a plain comment\n",
  );
  for (const lit of ["5sec", "10/min", "1.5s", "2S", "4kb", "1.0000000001%"]) expect(bad, "policy p", lit, "invalid.illegal.numeric.adm");
  for (const esc of ["\\q", "\\u", "\\u{110000}", "\\u{D800}", "\\u{0000041}"]) expect(bad, "policy q", esc, "invalid.illegal.escape.adm");
  expect(bad, "policy r", '"x-api-key) on external -> a', "invalid.illegal.unterminated-string.adm");
  expect(bad, "service s", "$", "invalid.illegal.character.adm");
  expect(bad, "service s", "//// four slashes: a plain comment", "comment.line.double-slash.adm", { parts: ["//", "// four slashes: a plain comment"], not: "comment.line.documentation" });

  const ok = snippet("escapes", 'policy q = set_header(name: "\\"\\\\\\n\\t\\r\\0", value: "\\u{10FFFF}\\u{0}\\u{FFFF}") on a -> b\n');
  for (const esc of ['\\"', "\\\\", "\\n", "\\t", "\\r", "\\0", "\\u{10FFFF}", "\\u{0}", "\\u{FFFF}"])
    expect(ok, "policy q", esc, "constant.character.escape.adm");

  const ctx = snippet(
    "contexts",
    "kind k(to: service, all: list<service>, r: rate) {\n  placement: egress,\n  state: per_sender,\n}\n" +
      "call rate -> method { rate: 5/s }\n" +
      "policy retry = retry(attempts: 1, per_try_timeout: 1ms) on rate -> method.rate at egress\n" +
      "policy mine = k(to: rate, all: [rate, method], r: 1/s) on * -> *\n",
  );
  expect(ctx, "kind k(", "service", "support.type.adm", { not: "keyword" });
  expect(ctx, "kind k(", "service", "support.type.adm", { nth: 1, not: "keyword" });
  expect(ctx, "kind k(", "rate", "support.type.adm");
  expect(ctx, "call rate -> method", "rate", "variable.other.service.adm", { not: "support.type" });
  expect(ctx, "call rate -> method", "method", "variable.other.service.adm", { not: "support.type" });
  expect(ctx, "call rate -> method", "rate", "support.type.property-name.adm", { nth: 1 });
  expect(ctx, "policy retry = retry(", "retry", "entity.name.function.policy.adm");
  expect(ctx, "policy retry = retry(", "retry", "support.function.kind.adm", { nth: 1 });
  expect(ctx, "policy retry = retry(", "rate", "entity.name.function.method.adm", { nth: 1 });
  expect(ctx, "policy retry = retry(", "egress", "support.constant.side.adm");
  expect(ctx, "policy mine = k(", "k", "entity.name.function.kind.adm");
  expect(ctx, "policy mine = k(", "rate", "variable.other.adm");
  expect(ctx, "policy mine = k(", "*", "variable.language.wildcard.adm", { nth: 1 });
}

const files = validFiles.length + errorFiles.length;
if (failures.length) {
  console.log(`FAIL: ${failures.length} problem(s) with syntaxes/adm.tmLanguage.json (${files} files tokenized)\n`);
  for (const f of failures) console.log(`- ${f}\n`);
  console.log("Inspect a file's tokens with `node editors/vscode/test/tokenize.mjs --dump FILE`.");
  process.exit(1);
}
console.log(`ok: the TextMate grammar tokenizes ${validFiles.length} valid and ${errorFiles.length} invalid .adm files as the lexer does, with every token scoped`);
