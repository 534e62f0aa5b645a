//! Bearer tokens for the HTTP query API.
//!
//! Dashboards read through the HTTP API, often from a browser, where NATS permissions cannot
//! follow them; a signed token carried with each request says which accounts its holder may
//! read. Tokens are JWTs verified with keys read from files at start (HMAC secrets, Ed25519,
//! RSA or EC public keys), so the service never issues tokens and never holds a private key
//! unless HMAC is chosen. Several keys may be configured at once, which is how keys are rotated:
//! a token is accepted when any key of its algorithm's family verifies it.
//!
//! A token's claims: `accounts` (required; account ids, or `"*"` for every account), `exp`
//! (required), `nbf` (checked when present), `iss` and `aud` (required and checked when
//! configured). See docs/operations.md, "HTTP API security".
//!
//! No key configured means no authentication (development): every `/v1` request is answered.

use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;

/// The smallest HMAC secret accepted: 256 bits, as RFC 7518 asks of HS256.
pub const MIN_SECRET_BYTES: usize = 32;

/// Clock skew allowed when checking `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// The claim that lists the accounts a token may read; this value grants every account.
pub const ALL_ACCOUNTS: &str = "*";

/// Where the verification keys come from and what a token must say besides its signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// Files each holding one HMAC secret (HS256, HS384, HS512).
    pub secret_files: Vec<PathBuf>,
    /// PEM files each holding one public key (Ed25519: EdDSA; RSA: RS*/PS*; EC P-256/P-384:
    /// ES256/ES384).
    pub public_key_files: Vec<PathBuf>,
    /// When set, a token's `iss` must be present and equal to it.
    pub issuer: Option<String>,
    /// When set, a token's `aud` must be present and contain it.
    pub audience: Option<String>,
}

/// Why a configured key file cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeySetupError {
    #[error("cannot read the HTTP auth key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the HMAC secret in {path} has {len} bytes; at least {MIN_SECRET_BYTES} random bytes are needed"
    )]
    SecretTooShort { path: String, len: usize },
    #[error(
        "{path} holds a private key: give the public key (`-----BEGIN PUBLIC KEY-----`) and keep the private one with whoever issues tokens"
    )]
    PrivateGivenAsPublic { path: String },
    #[error(
        "{path} is not a PEM public key (`-----BEGIN PUBLIC KEY-----` with an Ed25519, RSA or EC P-256/P-384 key, or `-----BEGIN RSA PUBLIC KEY-----`)"
    )]
    NotAPublicKey { path: String },
}

/// Why a request's token is not accepted (401).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("this route needs a bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the Authorization header is not one `Bearer <token>`")]
    NotBearer,
    #[error("the bearer token is not a well-formed JWT: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    #[error("the token's algorithm ({0:?}) matches no configured key")]
    NoKeyForAlgorithm(jsonwebtoken::Algorithm),
    #[error("the token's signature is not from a configured key")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's issuer (iss) is missing or not the one this service trusts")]
    WrongIssuer,
    #[error("the token's audience (aud) is missing or does not name this service")]
    WrongAudience,
    #[error("the token's claims are not accepted: {0}")]
    Claims(#[source] jsonwebtoken::errors::Error),
}

impl TokenError {
    /// Whether the request carried a token at all (RFC 6750: `error="invalid_token"` only then).
    pub fn had_token(&self) -> bool {
        !matches!(self, TokenError::Missing)
    }
}

/// The accounts a verified token may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    accounts: Vec<String>,
}

impl Grant {
    /// A token grants an account it names, and every account when it names `"*"`.
    pub fn allows(&self, account: &str) -> bool {
        self.accounts
            .iter()
            .any(|granted| granted == ALL_ACCOUNTS || granted == account)
    }
}

/// The claims this service reads; the registered ones (`exp`, `nbf`, `iss`, `aud`) are checked
/// by [`Validation`].
#[derive(Debug, Deserialize)]
struct Claims {
    accounts: Vec<String>,
}

/// Verifies bearer tokens against the configured keys and claims. Its `Debug` shows no key
/// material (the keys redact themselves).
#[derive(Debug, Clone)]
pub struct Authenticator {
    keys: Vec<DecodingKey>,
    validation: Validation,
}

impl Authenticator {
    /// Reads every configured key; `None` when there is none (authentication off).
    pub fn from_settings(settings: &AuthSettings) -> Result<Option<Self>, KeySetupError> {
        let mut keys = Vec::new();
        for path in &settings.secret_files {
            keys.push(secret_key(path, std::fs::read(path))?);
        }
        for path in &settings.public_key_files {
            keys.push(public_key(path, std::fs::read_to_string(path))?);
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            keys,
            validation: validation(settings),
        }))
    }

    /// The family of each configured key, in order (for the start-up log).
    pub fn families(&self) -> Vec<AlgorithmFamily> {
        self.keys.iter().map(DecodingKey::family).collect()
    }

    /// The grant of a request's `Authorization: Bearer` token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Grant, TokenError> {
        self.verify(bearer_token(headers)?)
    }

    /// Checks the token's signature with each key of its algorithm's family, then its claims.
    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(TokenError::Malformed)?;
        let family = header.alg.family();
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let mut tried = false;
        for key in self.keys.iter().filter(|k| k.family() == family) {
            tried = true;
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    return Ok(Grant {
                        accounts: data.claims.accounts,
                    });
                }
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Err(claims_error(e)),
            }
        }
        Err(if tried {
            TokenError::BadSignature
        } else {
            TokenError::NoKeyForAlgorithm(header.alg)
        })
    }
}

/// The registered claims every token must satisfy: `exp` always, `iss` and `aud` when
/// configured, `nbf` when present; the algorithm is set per token from its key's family.
fn validation(settings: &AuthSettings) -> Validation {
    let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
    let mut required = vec!["exp"];
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    if let Some(issuer) = &settings.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &settings.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// Names what is wrong with a token whose signature was verified (or not even reached).
fn claims_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => TokenError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => TokenError::WrongAudience,
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            TokenError::Malformed(e)
        }
        _ => TokenError::Claims(e),
    }
}

/// The token of the one `Authorization` header, which must use the `Bearer` scheme (its name
/// in any case, RFC 7235).
fn bearer_token(headers: &HeaderMap) -> Result<&str, TokenError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(TokenError::Missing)?;
    if values.next().is_some() {
        return Err(TokenError::NotBearer);
    }
    let value = value.to_str().map_err(|_| TokenError::NotBearer)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(TokenError::NotBearer);
    }
    Ok(token)
}

/// An HMAC secret: the file's bytes, less trailing line breaks (like the NATS secret files).
fn secret_key(path: &Path, read: std::io::Result<Vec<u8>>) -> Result<DecodingKey, KeySetupError> {
    let shown = path.display().to_string();
    let mut secret = read.map_err(|source| KeySetupError::Read {
        path: shown.clone(),
        source,
    })?;
    while secret.ends_with(b"\n") || secret.ends_with(b"\r") {
        secret.pop();
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeySetupError::SecretTooShort {
            path: shown,
            len: secret.len(),
        });
    }
    Ok(DecodingKey::from_secret(&secret))
}

/// A PEM public key, of whichever family it is (Ed25519, EC, RSA).
fn public_key(path: &Path, read: std::io::Result<String>) -> Result<DecodingKey, KeySetupError> {
    let shown = path.display().to_string();
    let text = read.map_err(|source| KeySetupError::Read {
        path: shown.clone(),
        source,
    })?;
    match pem_label(&text) {
        Some(label) if label.contains("PRIVATE KEY") => {
            return Err(KeySetupError::PrivateGivenAsPublic { path: shown });
        }
        Some("PUBLIC KEY" | "RSA PUBLIC KEY") => {}
        _ => return Err(KeySetupError::NotAPublicKey { path: shown }),
    }
    let pem = text.as_bytes();
    DecodingKey::from_ed_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_rsa_pem(pem))
        .map_err(|_| KeySetupError::NotAPublicKey { path: shown })
}

/// The label of the first PEM block (`PUBLIC KEY` in `-----BEGIN PUBLIC KEY-----`).
fn pem_label(text: &str) -> Option<&str> {
    let begin = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[begin..];
    Some(&rest[..rest.find("-----")?])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a secret of thirty-two bytes or more";

    fn authenticator(keys: Vec<DecodingKey>, settings: &AuthSettings) -> Authenticator {
        Authenticator {
            keys,
            validation: validation(settings),
        }
    }

    fn token(alg: Algorithm, key: &EncodingKey, accounts: &[&str]) -> String {
        let claims =
            json!({"accounts": accounts, "exp": jsonwebtoken::get_current_timestamp() + 600});
        jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
    }

    fn pem_key(text: &str) -> Result<DecodingKey, KeySetupError> {
        public_key(Path::new("key.pem"), Ok(text.to_owned()))
    }

    #[test]
    fn each_public_key_family_is_recognised_and_verifies_its_tokens() {
        for (alg, signing) in [
            (Algorithm::EdDSA, &rcgen::PKCS_ED25519),
            (Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256),
            (Algorithm::ES384, &rcgen::PKCS_ECDSA_P384_SHA384),
            (Algorithm::RS256, &rcgen::PKCS_RSA_SHA256),
        ] {
            let pair = rcgen::KeyPair::generate_for(signing).unwrap();
            let key = pem_key(&pair.public_key_pem()).unwrap();
            assert_eq!(key.family(), alg.family(), "{alg:?}");
            let private = pair.serialize_pem();
            let encoding = match alg.family() {
                AlgorithmFamily::Ed => EncodingKey::from_ed_pem(private.as_bytes()),
                AlgorithmFamily::Ec => EncodingKey::from_ec_pem(private.as_bytes()),
                _ => EncodingKey::from_rsa_pem(private.as_bytes()),
            }
            .unwrap();
            let auth = authenticator(vec![key], &AuthSettings::default());
            let grant = auth.verify(&token(alg, &encoding, &["acme"])).unwrap();
            assert!(grant.allows("acme") && !grant.allows("globex"), "{alg:?}");
        }
    }

    #[test]
    fn a_public_key_cannot_serve_as_an_hmac_secret() {
        // The classic confusion: an HS256 token "signed" with the public key's text.
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let public = pair.public_key_pem();
        let auth = authenticator(vec![pem_key(&public).unwrap()], &AuthSettings::default());
        let forged = token(
            Algorithm::HS256,
            &EncodingKey::from_secret(public.as_bytes()),
            &["*"],
        );
        assert!(matches!(
            auth.verify(&forged),
            Err(TokenError::NoKeyForAlgorithm(Algorithm::HS256))
        ));
    }

    #[test]
    fn private_keys_certificates_and_other_files_are_refused_as_public_keys() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert!(matches!(
            pem_key(&pair.serialize_pem()),
            Err(KeySetupError::PrivateGivenAsPublic { .. })
        ));
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        assert!(matches!(
            pem_key(&cert.pem()),
            Err(KeySetupError::NotAPublicKey { .. })
        ));
        assert!(matches!(
            pem_key("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"),
            Err(KeySetupError::NotAPublicKey { .. })
        ));
    }

    #[test]
    fn an_hmac_secret_is_the_file_less_its_line_breaks_and_must_be_long_enough() {
        let path = Path::new("secret");
        let mut file = SECRET.to_vec();
        file.extend_from_slice(b"\r\n\n");
        let auth = authenticator(
            vec![secret_key(path, Ok(file)).unwrap()],
            &AuthSettings::default(),
        );
        let signed = token(
            Algorithm::HS384,
            &EncodingKey::from_secret(SECRET),
            &["acme"],
        );
        assert!(auth.verify(&signed).is_ok());
        assert!(matches!(
            secret_key(path, Ok(b"short\n".to_vec())),
            Err(KeySetupError::SecretTooShort { len: 5, .. })
        ));
    }

    #[test]
    fn a_later_key_verifies_when_an_earlier_one_does_not() {
        let old = b"the old secret, thirty-two bytes long";
        let auth = authenticator(
            vec![
                DecodingKey::from_secret(old),
                DecodingKey::from_secret(SECRET),
            ],
            &AuthSettings::default(),
        );
        for secret in [&old[..], SECRET] {
            let signed = token(Algorithm::HS256, &EncodingKey::from_secret(secret), &["a"]);
            assert!(auth.verify(&signed).is_ok());
        }
        let other = token(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"neither of the two configured ones"),
            &["a"],
        );
        assert!(matches!(auth.verify(&other), Err(TokenError::BadSignature)));
    }

    #[test]
    fn the_configured_issuer_and_audience_are_required() {
        let settings = AuthSettings {
            issuer: Some("issuer".into()),
            audience: Some("api".into()),
            ..AuthSettings::default()
        };
        let auth = authenticator(vec![DecodingKey::from_secret(SECRET)], &settings);
        let key = EncodingKey::from_secret(SECRET);
        let exp = jsonwebtoken::get_current_timestamp() + 600;
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap()
        };
        let full = json!({"accounts": ["a"], "exp": exp, "iss": "issuer", "aud": ["api", "x"]});
        assert!(auth.verify(&sign(full)).is_ok());
        let no_iss = json!({"accounts": ["a"], "exp": exp, "aud": "api"});
        assert!(matches!(
            auth.verify(&sign(no_iss)),
            Err(TokenError::WrongIssuer)
        ));
        let no_aud = json!({"accounts": ["a"], "exp": exp, "iss": "issuer"});
        assert!(matches!(
            auth.verify(&sign(no_aud)),
            Err(TokenError::WrongAudience)
        ));
        let no_accounts = json!({"exp": exp, "iss": "issuer", "aud": "api"});
        assert!(matches!(
            auth.verify(&sign(no_accounts)),
            Err(TokenError::Claims(_))
        ));
    }

    #[test]
    fn only_one_bearer_authorization_header_is_read() {
        let headers = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for v in values {
                map.append(header::AUTHORIZATION, v.parse().unwrap());
            }
            map
        };
        assert_eq!(bearer_token(&headers(&["Bearer abc"])).unwrap(), "abc");
        assert_eq!(bearer_token(&headers(&["bearer  abc "])).unwrap(), "abc");
        assert!(matches!(
            bearer_token(&headers(&[])),
            Err(TokenError::Missing)
        ));
        for bad in [
            &["Basic abc"][..],
            &["Bearer"],
            &["Bearer "],
            &["Bearer a", "Bearer b"],
        ] {
            assert!(
                matches!(bearer_token(&headers(bad)), Err(TokenError::NotBearer)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_grant_names_accounts_or_all_of_them() {
        let some = Grant {
            accounts: vec!["acme".into()],
        };
        assert!(some.allows("acme"));
        assert!(!some.allows("acme2") && !some.allows("*x"));
        let all = Grant {
            accounts: vec![ALL_ACCOUNTS.into()],
        };
        assert!(all.allows("globex"));
    }
}
