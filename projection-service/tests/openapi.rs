#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The OpenAPI description of the HTTP API (`followers_projection_service::http::openapi`):
//! - the drift check: `docs/openapi.json` is exactly what the code generates, so CI fails when a
//!   route or a wire type changed and the file was not regenerated;
//! - the document is OpenAPI 3.1 in structure: every `$ref` resolves, every path template's
//!   parameters are the operation's path parameters, operation ids are unique, and every
//!   example is valid against its schema;
//! - the service serves exactly that document at `/openapi.json`, without a token, and answers
//!   every path it documents (and documents the routes it shares with the command service).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use followers_projection_service::feed::{Feed, FeedLimits};
use followers_projection_service::http::{HttpLimits, HttpSecurity, HttpState, openapi, router};
use followers_projection_service::past::{Past, PastLimits};
use followers_projection_service::queries::{Budget, Queries, QueryLimits, query_meters};
use followers_runtime::http::Health;
use followers_shared::read_model::ReadModel;
use followers_store::{LiveModel, MemoryStore};
use serde_json::Value;
use tower::ServiceExt;

fn generated() -> Value {
    serde_json::from_str(&openapi::document().unwrap()).unwrap()
}

#[test]
fn docs_openapi_json_is_up_to_date() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(openapi::FILE);
    let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        on_disk == openapi::document().unwrap(),
        "{} is out of date: run `{}`",
        openapi::FILE,
        openapi::REGENERATE
    );
}

/// Every `$ref` in `value`, with where it was found.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref"
                    && let Value::String(target) = v
                {
                    out.push((at.to_owned(), target.clone()));
                }
                refs(v, &format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Each operation: its path, method and object.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((path.clone(), method.clone(), op.clone()));
        }
    }
    out
}

/// A parameter, resolving a `$ref` into `components/parameters`.
fn parameter<'a>(doc: &'a Value, p: &'a Value) -> &'a Value {
    match p["$ref"].as_str() {
        Some(target) => doc.pointer(target.trim_start_matches('#')).unwrap(),
        None => p,
    }
}

#[test]
fn the_document_is_openapi_3_1_and_every_reference_resolves() {
    let doc = generated();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut found = Vec::new();
    refs(&doc, "", &mut found);
    assert!(!found.is_empty());
    for (at, target) in found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {target}"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: `{target}` resolves to nothing"
        );
    }
    let mut ids = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no id"));
        assert!(ids.insert(id.to_owned()), "operationId `{id}` twice");
        assert!(!op["responses"].as_object().unwrap().is_empty(), "{id}");
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let in_path: BTreeSet<String> = params
            .iter()
            .map(|p| parameter(&doc, p))
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{id}: {p}");
                p["name"].as_str().unwrap().to_owned()
            })
            .collect();
        let in_path: BTreeSet<&str> = in_path.iter().map(String::as_str).collect();
        assert_eq!(templated, in_path, "{id}: the path's parameters");
        let mut names = BTreeSet::new();
        for p in &params {
            let p = parameter(&doc, p);
            assert!(
                names.insert((p["in"].clone().to_string(), p["name"].to_string())),
                "{id}: {p}"
            );
        }
    }
}

/// A validator of `schema` (which may refer into the document's components).
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut schema = schema.clone();
    schema["components"] = doc["components"].clone();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// The examples of a `content` map, with their schemas.
fn media(at: &str, content: &Value, out: &mut Vec<(String, Value, Value)>) {
    for (kind, m) in content.as_object().into_iter().flatten() {
        if let Some(example) = m.get("example") {
            out.push((format!("{at} {kind}"), m["schema"].clone(), example.clone()));
        }
    }
}

/// Every example of a request or a response body, and of a parameter, with its schema.
fn examples(doc: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        let at = format!("components/responses/{name}");
        media(&at, &response["content"], &mut out);
    }
    for (path, method, op) in operations(doc) {
        let at = format!("{method} {path}");
        media(
            &format!("{at} request"),
            &op["requestBody"]["content"],
            &mut out,
        );
        for (status, response) in op["responses"].as_object().unwrap() {
            media(&format!("{at} {status}"), &response["content"], &mut out);
        }
        for p in op["parameters"].as_array().into_iter().flatten() {
            if let Some(example) = p.get("example") {
                let at = format!("{at} {}", p["name"]);
                out.push((at, p["schema"].clone(), example.clone()));
            }
        }
    }
    out
}

#[test]
fn every_example_is_valid_against_its_schema() {
    let doc = generated();
    let examples = examples(&doc);
    assert!(examples.len() >= 15, "{}", examples.len());
    let mut wrong = Vec::new();
    for (at, schema, example) in examples {
        let validator = validator(&doc, &schema);
        if let Err(e) = validator.validate(&example) {
            wrong.push(format!("{at}: {e}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn state() -> HttpState {
    let model = LiveModel::new(ReadModel::default());
    let ready = Arc::new(AtomicBool::new(false));
    let queries = Queries {
        model: model.clone(),
        max_wait: Duration::from_millis(10),
        ready: ready.clone(),
        budget: Budget::new(QueryLimits {
            in_flight: 4,
            waiting: 1,
            bytes: 1 << 20,
        }),
        meters: Arc::new(query_meters()),
        past: Arc::new(Past::new(
            Arc::new(MemoryStore::new()),
            PastLimits::default(),
        )),
        elsewhere: None,
        feed: Feed::new(
            model.clone(),
            Arc::new(followers_store::MemoryStore::new()),
            FeedLimits {
                streams: 1,
                buffer: 1,
                slow_after: Duration::from_millis(10),
            },
            tokio_util::sync::CancellationToken::new(),
        ),
    };
    HttpState {
        queries: Arc::new(queries),
        health: Health {
            model,
            serving: ready,
            metrics: None,
            on_scrape: None,
        },
    }
}

fn limits() -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        max_connections: 4,
        max_request_bytes: 1 << 20,
    }
}

async fn get(app: &axum::Router, method: Method, path: &str) -> (StatusCode, Vec<u8>) {
    let body = if method == Method::POST {
        Body::from("{}")
    } else {
        Body::empty()
    };
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(body)
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec())
}

#[tokio::test]
async fn the_service_serves_the_generated_document_and_answers_every_documented_path() {
    let security = HttpSecurity {
        serve_metrics: true,
        ..HttpSecurity::default()
    };
    let app = router(state(), limits(), &security);
    let (status, served) = get(&app, Method::GET, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(served).unwrap(),
        openapi::document().unwrap()
    );
    let doc = generated();
    for (path, method, _) in operations(&doc) {
        let concrete: Vec<String> = path
            .split('/')
            .map(|s| match s {
                "{kind}" => "contact".to_owned(),
                s if s.starts_with('{') => "x1".to_owned(),
                s => s.to_owned(),
            })
            .collect();
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, body) = get(&app, method.clone(), &concrete.join("/")).await;
        // An unknown path or method gets axum's fallback: 404 or 405 with an empty body.
        let fallback = matches!(
            status,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
        ) && body.is_empty();
        assert!(!fallback, "{method} {path}: {status}, which is no route");
    }
    for shared in ["/health", "/ready", "/metrics", "/openapi.json"] {
        assert!(
            doc["paths"].get(shared).is_some(),
            "{shared} is undocumented"
        );
    }
}

/// What `/ready` writes is what the document says.
#[tokio::test]
async fn the_readiness_body_is_as_documented() {
    let app = router(state(), limits(), &HttpSecurity::default());
    let (status, body) = get(&app, Method::GET, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let doc = generated();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let schema =
        &doc["paths"]["/ready"]["get"]["responses"]["503"]["content"]["application/json"]["schema"];
    assert!(validator(&doc, schema).is_valid(&body), "{body}");
}
