//! One nkey per NATS user of an accounts file.
//!
//! deploy/nats/accounts.conf names each user's public key as an environment variable,
//! `$FOLLOWERS_<NAME>_NKEY`. [`provision`] finds those names in the file, makes a seed file
//! `<name>.nk` for each user that has none yet (readable by its owner only), and writes
//! `nats-users.env` with every public key, for the server's environment. Existing seeds are
//! kept, so running it again after adding a user adds only that user; deleting one seed file and
//! running it again rotates that user's key.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file of public keys written next to the seeds.
pub const ENV_FILE: &str = "nats-users.env";

const VARIABLE_PREFIX: &str = "$FOLLOWERS_";
const VARIABLE_SUFFIX: &str = "_NKEY";

/// Why keys could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NkeysError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a user nkey seed ({reason})")]
    BadSeed { path: PathBuf, reason: String },
    #[error("{0} names no user key (no $FOLLOWERS_<NAME>_NKEY)")]
    NoUsers(PathBuf),
}

/// A user of the accounts file and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKey {
    /// The environment variable the accounts file reads (`FOLLOWERS_COMMAND_NKEY`).
    pub variable: String,
    /// Where its seed is (`command.nk`).
    pub seed_file: PathBuf,
    pub public_key: String,
}

/// The user variables an accounts file names, in order, without duplicates.
pub fn user_variables(accounts_conf: &str) -> Vec<String> {
    let mut found = BTreeSet::new();
    for (start, _) in accounts_conf.match_indices(VARIABLE_PREFIX) {
        let rest = &accounts_conf[start + 1..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.ends_with(VARIABLE_SUFFIX)
            && name.len() > "FOLLOWERS_".len() + VARIABLE_SUFFIX.len()
        {
            found.insert(name);
        }
    }
    found.into_iter().collect()
}

/// `FOLLOWERS_AUDITOR_ACME_NKEY` → `auditor-acme`.
pub fn user_name(variable: &str) -> String {
    variable
        .trim_start_matches("FOLLOWERS_")
        .trim_end_matches(VARIABLE_SUFFIX)
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// Makes the missing seeds in `out` for every user of `accounts_conf`, and the env file.
pub fn provision(accounts_conf: &Path, out: &Path) -> Result<Vec<UserKey>, NkeysError> {
    let text = std::fs::read_to_string(accounts_conf).map_err(io(accounts_conf))?;
    let variables = user_variables(&text);
    if variables.is_empty() {
        return Err(NkeysError::NoUsers(accounts_conf.to_owned()));
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    let keys = variables
        .into_iter()
        .map(|variable| {
            let seed_file = out.join(format!("{}.nk", user_name(&variable)));
            let public_key = seed_of(&seed_file)?;
            Ok(UserKey {
                variable,
                seed_file,
                public_key,
            })
        })
        .collect::<Result<Vec<_>, NkeysError>>()?;
    let env: String = keys
        .iter()
        .map(|k| format!("{}={}\n", k.variable, k.public_key))
        .collect();
    let env_file = out.join(ENV_FILE);
    std::fs::write(&env_file, env).map_err(io(&env_file))?;
    Ok(keys)
}

/// The public key of a user's seed.
pub fn public_key(seed: &str) -> Result<String, nkeys::error::Error> {
    nkeys::KeyPair::from_seed(seed.trim()).map(|k| k.public_key())
}

/// The public key of the seed in `path`, made first if the file does not exist.
fn seed_of(path: &Path) -> Result<String, NkeysError> {
    match std::fs::read_to_string(path) {
        Ok(seed) => nkeys::KeyPair::from_seed(seed.trim())
            .map(|k| k.public_key())
            .map_err(|e| NkeysError::BadSeed {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = nkeys::KeyPair::new_user();
            let seed = key.seed().map_err(|e| NkeysError::BadSeed {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            write_private(path, &seed)?;
            Ok(key.public_key())
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> Result<(), NkeysError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> NkeysError + '_ {
    move |source| NkeysError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_user_variable_of_the_shipped_accounts_file_gets_a_key() {
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nats/accounts.conf");
        let dir = tempfile::tempdir().unwrap();
        let keys = provision(Path::new(shipped), dir.path()).unwrap();
        let names: Vec<_> = keys.iter().map(|k| user_name(&k.variable)).collect();
        for expected in [
            "admin",
            "command",
            "projection",
            "auditor-acme",
            "caller-acme",
        ] {
            assert!(names.contains(&expected.to_owned()), "{names:?}");
        }
        let env = std::fs::read_to_string(dir.path().join(ENV_FILE)).unwrap();
        for k in &keys {
            assert!(k.public_key.starts_with('U'));
            assert!(env.contains(&format!("{}={}", k.variable, k.public_key)));
        }
    }

    #[test]
    fn running_again_keeps_existing_seeds_and_a_deleted_seed_is_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("a.conf");
        std::fs::write(
            &conf,
            "users: [{nkey: $FOLLOWERS_A_NKEY}, {nkey: $FOLLOWERS_B_NKEY}]",
        )
        .unwrap();
        let first = provision(&conf, &dir.path().join("keys")).unwrap();
        std::fs::remove_file(dir.path().join("keys/b.nk")).unwrap();
        let second = provision(&conf, &dir.path().join("keys")).unwrap();
        assert_eq!(first[0], second[0]);
        assert_ne!(first[1].public_key, second[1].public_key);
    }
}
