//! Writes the OpenAPI description of the HTTP API into `docs/openapi.json` (see
//! `followers_projection_service::http::openapi`): `cargo run -p followers-projection-service
//! --example openapi`. The test `projection-service/tests/openapi.rs` fails when the file differs
//! from what this writes.

use std::path::Path;

use followers_projection_service::http::openapi;

fn main() -> anyhow::Result<()> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(openapi::FILE);
    let text = openapi::document()?;
    if std::fs::read_to_string(&file).ok().as_deref() == Some(text.as_str()) {
        println!("{} is up to date", openapi::FILE);
    } else {
        std::fs::write(&file, text)?;
        println!("wrote {}", openapi::FILE);
    }
    Ok(())
}
