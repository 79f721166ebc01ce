// Builds the web chat into crates/web/assets, the folder the parley binary
// embeds. The output is committed, and CI checks that this build
// reproduces it byte for byte: nothing here may depend on the time, the
// machine or the path of the checkout.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const clients = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(clients, "web", "src");
const out = join(clients, "..", "crates", "web", "assets");

// Exactly what the binary serves (crates/web/src/lib.rs names each file).
const COPIED = ["index.html", "app.css", "icon.svg"];

mkdirSync(out, { recursive: true });
for (const f of readdirSync(out)) rmSync(join(out, f), { recursive: true });
for (const f of COPIED) copyFileSync(join(src, f), join(out, f));

await build({
  absWorkingDir: clients,
  entryPoints: ["web/src/main.ts"],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  conditions: ["source"],
  charset: "utf8",
  legalComments: "none",
  sourcemap: false,
  minify: false,
  logLevel: "warning",
});
