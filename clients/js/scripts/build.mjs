// Builds dist/ (the ESM bundle the hub serves at /client/tidings.js, and the .d.ts files),
// checks the size budget, and with --check fails when the committed bundle is stale.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");
/** Entry, output, gzipped size budget in bytes. */
const BUNDLES = [
  ["src/index.ts", "tidings.js", 3072],
  // The hooks import the client from the package itself, so a page has one copy of it.
  ["src/react.ts", "react.js", 1024],
];

let failed = false;
const outputs = [];
for (const [entry, name, budget] of BUNDLES) {
  const result = await build({
    entryPoints: [join(root, entry)],
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    write: false,
    legalComments: "none",
    external: ["react", "tidings"],
  });
  const code = result.outputFiles[0].text;
  const gz = gzipSync(code, { level: 9 }).length;
  console.log(`${name}: ${code.length} bytes, ${gz} gzipped (budget ${budget})`);
  if (gz > budget) {
    console.error(`${name} is over its size budget: ${gz} > ${budget} bytes gzipped`);
    failed = true;
  }
  outputs.push([join(root, "dist", name), code]);
}
if (check) {
  for (const [out, code] of outputs) {
    const committed = existsSync(out) ? readFileSync(out, "utf8") : "";
    if (committed !== code) {
      console.error(`${out} is stale: run \`npm run build\` in clients/js and commit it`);
      failed = true;
    }
  }
} else {
  mkdirSync(join(root, "dist"), { recursive: true });
  for (const [out, code] of outputs) writeFileSync(out, code);
  execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", join(root, "tsconfig.json")], {
    stdio: "inherit",
  });
}
// Type-check in both modes.
execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", join(root, "tsconfig.json"), "--noEmit"], {
  stdio: "inherit",
});
process.exit(failed ? 1 : 0);
