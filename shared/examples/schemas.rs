//! Writes the JSON Schemas of the wire contract into `docs/schemas/` (see
//! `followers_shared::wire::schema`): `cargo run -p followers-shared --example schemas`.
//! Files that no schema produces any more are removed. The test `shared/tests/schemas.rs`
//! fails when the files differ from what this writes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use followers_shared::wire::schema;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::set_current_dir(&root)?;
    let dir = Path::new(schema::DIR);
    let files = schema::files();
    let wanted: BTreeSet<PathBuf> = files.iter().map(|(path, _)| dir.join(path)).collect();
    for old in existing(dir)? {
        if !wanted.contains(&old) {
            std::fs::remove_file(&old)?;
            println!("removed {}", old.display());
        }
    }
    for (path, text) in &files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&file, text)?;
            println!("wrote {}", file.display());
        }
    }
    println!("{} schemas in {}", files.len(), schema::DIR);
    Ok(())
}

/// The `.json` files under `dir`, at any depth.
fn existing(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(existing(&path)?);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(out)
}
