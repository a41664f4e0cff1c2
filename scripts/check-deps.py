#!/usr/bin/env python3
"""Fails when a crate declares a dependency its code never names.

cargo-machete's check, without building or installing it: for each workspace member,
every name under [dependencies], [dev-dependencies] and [build-dependencies] must appear
(as `name_with_underscores`) in the crate's Rust sources (src/, tests/, benches/,
examples/, build.rs). A dependency kept for what it switches on elsewhere rather than for
its own items is listed in KEPT with the reason.

    scripts/check-deps.py            (from anywhere; exit 1 and a list when one is unused)
"""
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# (crate, dependency) -> why it stays although no code names it.
KEPT = {
    ("modelplane-proto", "prost"): "the generated code (in OUT_DIR) names it",
    ("modelplane-proto", "tonic-prost"): "the generated code (in OUT_DIR) names it",
    ("modelplane-store", "protoc-bin-vendored-linux-x86_64"):
        "downloads a protoc that tools/protoc falls back on",
}


def sources(crate_dir):
    for folder in ("src", "tests", "benches", "examples"):
        yield from (crate_dir / folder).rglob("*.rs")
    build = crate_dir / "build.rs"
    if build.exists():
        yield build


def main():
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    unused = []
    for member in workspace["workspace"]["members"]:
        crate_dir = ROOT / member
        manifest = tomllib.loads((crate_dir / "Cargo.toml").read_text())
        crate = manifest["package"]["name"]
        text = "\n".join(path.read_text() for path in sources(crate_dir))
        tables = [manifest.get(t, {}) for t in ("dependencies", "dev-dependencies", "build-dependencies")]
        for target in manifest.get("target", {}).values():
            tables += [target.get(t, {}) for t in ("dependencies", "dev-dependencies", "build-dependencies")]
        for table in tables:
            for name, spec in table.items():
                package = spec.get("package", name) if isinstance(spec, dict) else name
                ident = name.replace("-", "_")
                if (crate, package) in KEPT:
                    continue
                if not re.search(r"\b" + re.escape(ident) + r"\b", text):
                    unused.append(f"{member}/Cargo.toml: {name} is declared but never named in {crate}'s code")
    for line in unused:
        print(line)
    if unused:
        print(f"{len(unused)} unused dependencies: remove them, or say in scripts/check-deps.py why one stays")
        return 1
    print("every declared dependency is used")
    return 0


if __name__ == "__main__":
    sys.exit(main())
