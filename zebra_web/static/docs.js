/* Renders /openapi.json as a readable list of operations (a local stand-in for Swagger UI: no CDN). */
"use strict";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function resolve(spec, schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return { name, schema: spec.components.schemas[name] };
  }
  return { name: null, schema };
}

async function main() {
  const out = document.getElementById("api-ops");
  let spec;
  try {
    const resp = await fetch("/openapi.json", { credentials: "same-origin" });
    if (!resp.ok) throw new Error(resp.status === 401 ? "Sign in on the main page first." : `HTTP ${resp.status}`);
    spec = await resp.json();
  } catch (e) {
    const err = document.getElementById("api-error");
    err.textContent = `Cannot load the API description: ${e.message}`;
    err.hidden = false;
    return;
  }
  document.getElementById("api-intro").textContent = `${spec.info.title} ${spec.info.version}\n\n${spec.info.description || ""}`;
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const box = el("details", "op card");
      const sum = el("summary");
      sum.append(el("span", `method ${method}`, method.toUpperCase()), el("span", "path", path), el("span", "muted", op.summary || ""));
      box.append(sum);
      if (op.description) box.append(el("p", "desc", op.description));
      const params = (op.parameters || []).map((p) => `${p.in} ${p.name}${p.required ? " (required)" : ""}: ${p.description || (p.schema && (p.schema.type || "")) || ""}`);
      if (params.length) { box.append(el("h3", "", "Parameters")); box.append(el("pre", "", params.join("\n"))); }
      const body = op.requestBody && op.requestBody.content;
      if (body) {
        for (const [ctype, media] of Object.entries(body)) {
          const { name, schema } = resolve(spec, media.schema || {});
          box.append(el("h3", "", `Body (${ctype})${name ? ": " + name : ""}`));
          box.append(el("pre", "", JSON.stringify(schema, null, 2)));
        }
      }
      const codes = Object.entries(op.responses || {}).map(([code, r]) => `${code}: ${r.description || ""}`);
      box.append(el("h3", "", "Responses"));
      box.append(el("pre", "", codes.join("\n")));
      out.append(box);
    }
  }
}

document.addEventListener("DOMContentLoaded", main);
