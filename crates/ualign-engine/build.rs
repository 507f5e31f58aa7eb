//! Provisions ONNX Runtime's shared library for the `ort` crate's `load-dynamic` mode:
//! unless ORT_DYLIB_PATH is set, fetch the pinned `onnxruntime` wheel with pip (the Python
//! package registry's own client), cache it under target/, and unpack
//! `libonnxruntime.so.*`. Its path is compiled in as UALIGN_ORT_BUILD_DYLIB. Failure is a
//! warning, not an error: the engine then looks for ORT_DYLIB_PATH or an installed Python
//! onnxruntime at run time and says how to fix it if neither is there.
//!
//! Model weights are the product's, not the engine's: the `ualign` package's build script
//! fetches those its model folders name into `target/weights/`, whose path is compiled in
//! here as UALIGN_WEIGHTS_CACHE.

use std::path::{Path, PathBuf};
use std::process::Command;

const ORT_VERSION: &str = "1.31.1";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    println!("cargo:rerun-if-env-changed=UALIGN_SKIP_ORT_FETCH");
    weights_cache();
    if std::env::var_os("UALIGN_SKIP_ORT_FETCH").is_some() || !cfg!(target_os = "linux") {
        println!("cargo:rustc-env=UALIGN_ORT_BUILD_DYLIB=");
        return;
    }
    match fetch() {
        Ok(lib) => println!("cargo:rustc-env=UALIGN_ORT_BUILD_DYLIB={}", lib.display()),
        Err(e) => {
            println!(
                "cargo:warning=could not fetch onnxruntime {ORT_VERSION} with pip ({e}); set ORT_DYLIB_PATH or `python3 -m pip install onnxruntime=={ORT_VERSION}`"
            );
            println!("cargo:rustc-env=UALIGN_ORT_BUILD_DYLIB=");
        }
    }
}

/// The target folder: caches there are shared by every profile and kept across
/// `cargo clean -p ualign-engine`.
fn target_dir() -> PathBuf {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR = <target>/<profile>/build/ualign-engine-<hash>/out
    out.ancestors().nth(4).map(Path::to_path_buf).unwrap_or(out)
}

/// target/ort-<version>/.
fn cache_dir() -> PathBuf {
    target_dir().join(format!("ort-{ORT_VERSION}"))
}

/// Where the workspace's build (the `ualign` package's build script) provisions model
/// weights: `target/weights`. The engine only looks there (see `weights.rs`).
fn weights_cache() {
    let cache = target_dir().join("weights");
    println!("cargo:rustc-env=UALIGN_WEIGHTS_CACHE={}", cache.display());
}

fn fetch() -> Result<PathBuf, String> {
    let dir = cache_dir();
    let lib = dir.join(format!("libonnxruntime.so.{ORT_VERSION}"));
    if lib.is_file() {
        return Ok(lib);
    }
    let wheels = dir.join("wheel");
    std::fs::create_dir_all(&wheels).map_err(|e| e.to_string())?;
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"])
        .arg(format!("onnxruntime=={ORT_VERSION}"))
        .arg("-d")
        .arg(&wheels)
        .status()
        .map_err(|e| format!("running python3: {e}"))?;
    if !status.success() {
        return Err(format!("pip download exited with {status}"));
    }
    // Unpack only the shared library, with Python's zipfile (no extra build dependency).
    let script = format!(
        "import glob, sys, zipfile\n\
         w = sorted(glob.glob(sys.argv[1] + '/onnxruntime-{ORT_VERSION}-*.whl'))[-1]\n\
         z = zipfile.ZipFile(w)\n\
         n = [x for x in z.namelist() if x.startswith('onnxruntime/capi/libonnxruntime.so')][0]\n\
         open(sys.argv[2] + '.tmp', 'wb').write(z.read(n))\n"
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .arg(&wheels)
        .arg(&lib)
        .status()
        .map_err(|e| format!("running python3: {e}"))?;
    if !status.success() {
        return Err("unpacking the wheel failed".into());
    }
    std::fs::rename(PathBuf::from(format!("{}.tmp", lib.display())), &lib).map_err(|e| e.to_string())?;
    Ok(lib)
}
