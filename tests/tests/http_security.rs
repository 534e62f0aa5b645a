#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: the HTTP API's guards (docs/operations.md, "HTTP API security"). Bearer tokens
//! on `/v1` (401 without a valid one, 403 for another account), open probes, the CORS
//! allow-list, TLS with a test CA (and a handshake bounded by the header timeout), `/metrics`
//! on its own address, and an access log that never shows a token.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use followers_shared::error::ErrorCode;
use followers_shared::wire::QueryReply;
use followers_tests::NatsServer;
use followers_tests::stack::{TEAM, open_team, start_command_service, start_projection_service};
use followers_tests::typed::{NONE, account, by, new_contact};
use jsonwebtoken::{Algorithm, EncodingKey, Header, get_current_timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest any wait in these tests may take; a bound on a condition, not a speed target.
const BOUND: Duration = Duration::from_secs(10);
const ISSUER: &str = "followers-tests";
const AUDIENCE: &str = "dashboards";
const DASHBOARD: &str = "https://dashboard.example.com";

/// The verification keys a test service trusts, with what signs for them, in a directory of
/// their own.
struct Keys {
    dir: tempfile::TempDir,
    /// Signs HS256 tokens with the configured secret.
    hmac: EncodingKey,
    /// Signs EdDSA tokens with the private half of the configured public key.
    ed25519: EncodingKey,
}

impl Keys {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = b"0123456789abcdef0123456789abcdef-test-secret";
        std::fs::write(dir.path().join("hmac.secret"), secret).unwrap();
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        std::fs::write(dir.path().join("ed25519.pub"), ed.public_key_pem()).unwrap();
        Self {
            hmac: EncodingKey::from_secret(secret),
            ed25519: EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).unwrap(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Flags that turn authentication on with both keys (as during a key rotation), an issuer
    /// and an audience.
    fn flags(&self) -> Vec<String> {
        vec![
            "--http-auth-secret-file".into(),
            self.path("hmac.secret"),
            "--http-auth-public-key-file".into(),
            self.path("ed25519.pub"),
            "--http-auth-issuer".into(),
            ISSUER.into(),
            "--http-auth-audience".into(),
            AUDIENCE.into(),
        ]
    }
}

/// Claims for `accounts`, valid for an hour, from the configured issuer to the audience (a
/// token's claims, not a request: JSON is what a token issuer writes).
fn claims(accounts: &[&str]) -> Value {
    json!({
        "sub": "dashboard-1",
        "accounts": accounts,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": get_current_timestamp() + 3600,
    })
}

fn sign(key: &EncodingKey, alg: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

/// A client that keeps no idle connections, so it never holds a place of the server's own.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn strings(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// A system with account `acme` (the team and contact `c1`) and account `globex`.
async fn accounts(server: &NatsServer) {
    let acme = account(server, "acme").await;
    open_team(&acme, TEAM).await;
    let c1 = new_contact("c1", None, NONE);
    acme.command(by("ann"), c1).await.unwrap();
    open_team(&account(server, "globex").await, &[]).await;
}

/// The error code of a refusal, and its `WWW-Authenticate` header.
async fn refusal(response: reqwest::Response) -> (u16, ErrorCode, String) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let reply: QueryReply<Value> = response.json().await.unwrap();
    assert!(!reply.ok);
    (status, reply.error.unwrap().code, challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_api_answers_only_a_valid_token_for_the_account() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    accounts(&server).await;
    let keys = Keys::new();
    let projection = start_projection_service(&server, &strings(&keys.flags())).await;
    let http = http_client();
    let url = format!(
        "http://{}/v1/accounts/acme/access?user=ann&action=view&kind=contact&id=c1",
        projection.http_addr
    );
    let get = |token: Option<String>| {
        let mut request = http.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // No token: 401 with the bare challenge.
    let (status, code, challenge) = refusal(get(None).await.unwrap()).await;
    assert_eq!((status, code), (401, ErrorCode::Unauthenticated));
    assert_eq!(challenge, r#"Bearer realm="followers""#);

    // A token that is refused says `invalid_token`: expired, not yet valid, from the wrong
    // issuer, for another audience, without an expiry, signed by a key not configured, or not
    // a JWT at all.
    let now = get_current_timestamp();
    let mut expired = claims(&["acme"]);
    expired["exp"] = json!(now - 3600);
    let mut early = claims(&["acme"]);
    early["nbf"] = json!(now + 3600);
    let mut stranger = claims(&["acme"]);
    stranger["iss"] = json!("someone-else");
    let mut elsewhere = claims(&["acme"]);
    elsewhere["aud"] = json!("another-service");
    let mut endless = claims(&["acme"]);
    endless.as_object_mut().unwrap().remove("exp");
    let wrong_secret = EncodingKey::from_secret(b"another secret of more than 32 bytes....");
    let wrong_ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let wrong_ed = EncodingKey::from_ed_pem(wrong_ed.serialize_pem().as_bytes()).unwrap();
    let refused = [
        ("expired", sign(&keys.hmac, Algorithm::HS256, &expired)),
        ("not yet valid", sign(&keys.hmac, Algorithm::HS256, &early)),
        (
            "wrong issuer",
            sign(&keys.hmac, Algorithm::HS256, &stranger),
        ),
        (
            "wrong audience",
            sign(&keys.hmac, Algorithm::HS256, &elsewhere),
        ),
        ("no exp", sign(&keys.hmac, Algorithm::HS256, &endless)),
        (
            "wrong secret",
            sign(&wrong_secret, Algorithm::HS256, &claims(&["acme"])),
        ),
        (
            "wrong Ed25519 key",
            sign(&wrong_ed, Algorithm::EdDSA, &claims(&["acme"])),
        ),
        ("not a JWT", "not-a-token".to_owned()),
    ];
    for (what, token) in refused {
        let (status, code, challenge) = refusal(get(Some(token)).await.unwrap()).await;
        assert_eq!((status, code), (401, ErrorCode::Unauthenticated), "{what}");
        assert_eq!(
            challenge, r#"Bearer realm="followers", error="invalid_token""#,
            "{what}"
        );
    }

    // A valid token for another account: 403, whether or not the account exists.
    let globex = sign(&keys.hmac, Algorithm::HS256, &claims(&["globex"]));
    let (status, code, challenge) = refusal(get(Some(globex.clone())).await.unwrap()).await;
    assert_eq!((status, code), (403, ErrorCode::Forbidden));
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    let nowhere = http
        .get(format!(
            "http://{}/v1/accounts/nowhere",
            projection.http_addr
        ))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(nowhere).await.1, ErrorCode::Forbidden);

    // A valid token for the account, signed by either configured key, or granting every
    // account: the answer.
    let valid = [
        sign(&keys.hmac, Algorithm::HS256, &claims(&["globex", "acme"])),
        sign(&keys.ed25519, Algorithm::EdDSA, &claims(&["acme"])),
        sign(&keys.hmac, Algorithm::HS512, &claims(&["*"])),
    ];
    for token in valid {
        let response = get(Some(token)).await.unwrap();
        assert_eq!(response.status(), 200);
        let reply: QueryReply<Value> = response.json().await.unwrap();
        assert_eq!(
            reply.answer.unwrap(),
            json!({"allowed": true, "reason": "admin"})
        );
    }

    // Probes and the API description need no token.
    for path in ["/health", "/ready", "/openapi.json"] {
        let response = http
            .get(format!("http://{}{path}", projection.http_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_answered_for_allowed_origins_only() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let keys = Keys::new();
    let mut flags = keys.flags();
    flags.extend(["--http-cors-origin".into(), DASHBOARD.into()]);
    let projection = start_projection_service(&server, &strings(&flags)).await;
    let http = http_client();
    let url = format!("http://{}/v1/accounts/acme", projection.http_addr);
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };

    let allowed = preflight(DASHBOARD).await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let header = |name: &str| {
        allowed
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
    };
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some(DASHBOARD)
    );
    assert!(
        header("access-control-allow-headers")
            .unwrap_or_default()
            .contains("authorization")
    );
    assert!(
        header("access-control-allow-methods")
            .unwrap_or_default()
            .contains("get")
    );

    let other = preflight("https://elsewhere.example.com").await.unwrap();
    let cors_headers: Vec<_> = other
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-allow"))
        .collect();
    assert!(cors_headers.is_empty(), "{cors_headers:?}");

    // The dashboard's page can read a refusal: a 401 carries the allow-origin header too.
    let refused = http
        .get(&url)
        .header("origin", DASHBOARD)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["access-control-allow-origin"], DASHBOARD);
    projection.stop().await;
    commands.stop().await;
}

/// A test CA and a certificate for `localhost` and `127.0.0.1` signed by it, in `dir`: returns
/// the CA's PEM and the certificate and key files.
fn test_ca(dir: &Path) -> (String, PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "followers test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca.pem(), cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_tls_with_the_test_ca() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    accounts(&server).await;
    let keys = Keys::new();
    let (ca, cert, key) = test_ca(keys.dir.path());
    let mut flags = keys.flags();
    flags.extend([
        "--http-tls-cert-file".into(),
        cert.display().to_string(),
        "--http-tls-key-file".into(),
        key.display().to_string(),
    ]);
    let projection = start_projection_service(&server, &strings(&flags)).await;
    let token = sign(&keys.hmac, Algorithm::HS256, &claims(&["acme"]));
    let url = format!(
        "https://{}/v1/accounts/acme/records/contact/c1/followers",
        projection.http_addr
    );

    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = trusting.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let reply: QueryReply<Value> = response.json().await.unwrap();
    assert_eq!(
        reply.answer.unwrap()["record"],
        json!({"kind": "contact", "id": "c1"})
    );

    // A client that does not trust the test CA cannot connect, and plain HTTP gets no answer.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting.get(&url).send().await.is_err());
    let plain = http_client()
        .get(format!("http://{}/health", projection.http_addr))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    projection.stop().await;
    commands.stop().await;
}

/// Reads until the server closes the connection (or resets it); returns what arrived.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let read = async {
        let mut out = Vec::new();
        let mut buf = vec![0; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("the server closes the connection in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_not_begun_is_dropped_after_the_header_timeout() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = test_ca(dir.path());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let projection = start_projection_service(
        &server,
        &[
            "--http-tls-cert-file",
            &cert,
            "--http-tls-key-file",
            &key,
            "--http-header-timeout-ms",
            "300",
        ],
    )
    .await;
    // Connect and never send a ClientHello: the server closes the connection.
    let mut silent = TcpStream::connect(projection.http_addr).await.unwrap();
    assert!(read_until_closed(&mut silent).await.is_empty());
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_their_own_address_only() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &["--metrics-addr", "127.0.0.1:0"]).await;
    let metrics_addr: SocketAddr = projection.metrics_addr.expect("a metrics address");
    assert_ne!(metrics_addr, projection.http_addr);
    let http = http_client();

    let metrics = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("followers_position"));
    let main = http
        .get(format!("http://{}/metrics", projection.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
    // The metrics address serves nothing else.
    let elsewhere = http
        .get(format!("http://{metrics_addr}/v1/accounts/acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    projection.stop().await;
    commands.stop().await;
}

/// Everything logged in this test process, as text without colours.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init()
            .expect("this test process installs the only subscriber");
        logs
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_each_request_but_never_its_token() {
    let logs = captured_logs();
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    accounts(&server).await;
    let keys = Keys::new();
    let projection = start_projection_service(&server, &strings(&keys.flags())).await;
    let token = sign(&keys.hmac, Algorithm::HS256, &claims(&["acme"]));
    let http = http_client();
    let base = format!(
        "http://{}/v1/accounts/acme/users/dee/records",
        projection.http_addr
    );
    let answered = http
        .get(format!("{base}?limit=7"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let refused = http.get(&base).bearer_auth("x.y.z").send().await.unwrap();
    assert_eq!(refused.status(), 401);

    // Each line is written before its response is sent.
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("path=/v1/accounts/acme/users/dee/records"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, status) in lines.iter().zip(["status=200", "status=401"]) {
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains("method=GET"), "{line}");
        assert!(line.contains(status), "{line}");
        assert!(line.contains("latency_us="), "{line}");
    }
    assert!(!text.contains(&token), "a token was logged");
    assert!(!text.contains("x.y.z"), "a token was logged");
    assert!(
        !text.to_ascii_lowercase().contains("authorization"),
        "{text}"
    );
    assert!(!text.contains("limit=7"), "a query string was logged");
    projection.stop().await;
    commands.stop().await;
}
