//! The OpenAPI 3.1 description of the HTTP API, generated rather than written, so that it cannot
//! drift from what is served (it did, while it was written by hand).
//!
//! - The paths come from the routes themselves: every query route is registered with aide's
//!   [`ApiRouter`] together with its documentation ([`super::api_routes`]), and the routes the
//!   service shares with the command service are documented beside them ([`operations`]).
//! - A query route's parameters come from its request type and [`HttpQuery`], the same table the
//!   route reads its fields with ([`super::Ask`]); its reply, error and request-body schemas
//!   come from the wire types through schemars, with the settings of `docs/schemas/`
//!   ([`followers_shared::wire::schema::openapi_generator`]).
//! - What no type says is written here once: summaries, the error responses and the bearer
//!   scheme, and examples (which a test validates against the schemas).
//!
//! [`document`] is the document as served at `/openapi.json`; `cargo run -p
//! followers-projection-service --example openapi` writes it to `docs/openapi.json`, and the test
//! `projection-service/tests/openapi.rs` fails when that file differs.

use std::cell::RefCell;
use std::rc::Rc;

use aide::axum::ApiRouter;
use aide::axum::routing::ApiMethodDocs;
use aide::generate::{GenContext, in_context};
use aide::openapi::{
    Header, Info, License, MediaType, OpenApi, Operation, Parameter, ParameterData,
    ParameterSchemaOrContent, PathStyle, QueryStyle, ReferenceOr, RequestBody, Response,
    SchemaObject, SecurityScheme, Server, StatusCode, Tag,
};
use aide::transform::{TransformOpenApi, TransformOperation};
use axum::Router;
use followers_shared::error::ErrorCode;
use followers_shared::ids::AccountId;
use followers_shared::model::RecordRef;
use followers_shared::store::Position;
use followers_shared::wire::schema::openapi_generator;
use followers_shared::wire::{ErrorBody, QueryReply, QueryRequest};
use schemars::{JsonSchema, Schema};
use serde_json::{Value, json};

/// The command that writes `docs/openapi.json`, named in the drift test's message.
pub const REGENERATE: &str = "cargo run -p followers-projection-service --example openapi";

/// Where the generated document is kept, relative to the repository's root.
pub const FILE: &str = "docs/openapi.json";

const QUERIES: &str = "queries";
const OPERATIONS: &str = "operations";
const BEARER: &str = "bearer";

/// Why the document could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("generating the OpenAPI document failed: {}", .0.join("; "))]
    Generation(Vec<String>),
}

/// Where a `GET` query route reads its request's fields from, besides the parameter of each
/// field's name: the table both the route ([`super::Ask`]) and its documentation follow.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    /// Fields read from the path segment of the same name (`{user}`).
    pub path: &'static [&'static str],
    /// A record field whose kind and id are the path segments `{kind}` and `{id}`.
    pub path_record: Option<&'static str>,
    /// A record field whose kind and id are two parameters: (field, kind, id).
    pub param_record: Option<(&'static str, &'static str, &'static str)>,
    /// Parameters read as numbers on this route besides `min_position`, `at_position` and
    /// `limit` (a name that is text on other routes, like `after`).
    pub numbers: &'static [&'static str],
}

/// A query served by a `GET` route.
pub trait HttpQuery: QueryRequest + JsonSchema + Send + 'static {
    const SHAPE: Shape;
}

/// Makes the thread's aide context describe schemas as `docs/schemas/` does; aide resets it once
/// a router is finished, so this is called before each router is built.
pub fn prepare() {
    in_context(|ctx| ctx.schema = openapi_generator());
}

/// Turns `routes` into the router to serve and its OpenAPI document (pretty JSON and a final
/// newline).
pub fn finish<S: Clone + Send + Sync + 'static>(routes: ApiRouter<S>) -> (Router<S>, String) {
    let mut api = OpenApi::default();
    let router = routes.finish_api_with(&mut api, describe);
    let text = followers_shared::json::to_string_pretty(&api) + "\n";
    (router, text)
}

/// The document served at `/openapi.json` (the routes as served, without a token check, which
/// changes no route).
pub fn document() -> Result<String, OpenApiError> {
    let errors = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&errors);
    let routes = {
        prepare();
        aide::generate::on_error(move |e| sink.borrow_mut().push(e.to_string()));
        super::api_routes(None)
    };
    let (_, text) = finish(routes);
    aide::generate::reset_context();
    let errors = errors.take();
    if errors.is_empty() {
        Ok(text)
    } else {
        Err(OpenApiError::Generation(errors))
    }
}

/// The document's own parts: info, servers, tags, the bearer scheme and the error responses.
fn describe(api: TransformOpenApi<'_>) -> TransformOpenApi<'_> {
    let mut api = api
        .info(Info {
            title: "followers projection service HTTP API".into(),
            description: Some(DESCRIPTION.into()),
            version: env!("CARGO_PKG_VERSION").into(),
            license: Some(License {
                name: "MIT".into(),
                identifier: Some("MIT".into()),
                ..License::default()
            }),
            ..Info::default()
        })
        .server(server("http", "The default --http-addr."))
        .server(server(
            "https",
            "The default --http-addr with --http-tls-cert-file and --http-tls-key-file.",
        ))
        .tag(tag(
            QUERIES,
            "The read models (docs/protocol.md section 5).",
        ))
        .tag(tag(
            OPERATIONS,
            "Health, readiness, metrics and this description.",
        ))
        .security_scheme(
            BEARER,
            SecurityScheme::Http {
                scheme: "bearer".into(),
                bearer_format: Some("JWT".into()),
                description: Some(BEARER_DESCRIPTION.into()),
                extensions: Default::default(),
            },
        );
    let responses = in_context(error_responses);
    let components = api
        .inner_mut()
        .components
        .get_or_insert_with(Default::default);
    for (name, response) in responses {
        components
            .responses
            .insert(name.into(), ReferenceOr::Item(response));
    }
    api
}

const DESCRIPTION: &str = "Read-only queries over the followers read models: access checks \
with reasons, follower lists, records of a user, a contact's opportunities, an account. The same \
queries are served over NATS on `followers.query.{account}.{query}`; commands are NATS only. \
Every reply is the envelope `{ok, position, answer}` or `{ok: false, error}`. Requests are strict \
at every depth: unknown query parameters or body fields, an array where an object is expected, \
and a key given twice are rejected (400, `malformed_request`, naming the field's path). Until the \
read models have loaded the history at start-up, a well-formed query answers 503 \
(`unavailable`). Reply objects may gain fields; ignore those you do not know. See \
docs/protocol.md for the whole protocol. The `/v1` routes need a bearer token (a JWT naming the \
accounts it may read) when the service is configured with verification keys; without keys \
(development) they need none, so keep such an instance on a private network. `/health`, `/ready` \
and `/openapi.json` are always open; `/metrics` is open where it is served. See \
docs/operations.md, \"HTTP API security\". This document is generated from the routes and the \
wire types.";

const BEARER_DESCRIPTION: &str = "A JWT signed with a key the service is configured with (an \
HMAC secret: HS256/HS384/HS512; an Ed25519 key: EdDSA; RSA: RS256-RS512, PS256-PS512; EC \
P-256/P-384: ES256/ES384). Claims: `accounts` (required: the account ids it may read, or `\"*\"` \
for every account), `exp` (required), `nbf` (checked when present), `iss` and `aud` (required \
when the service is configured with --http-auth-issuer / --http-auth-audience). Example claims: \
`{\"sub\": \"dashboard-eu\", \"accounts\": [\"acme\", \"globex\"], \"iss\": \"crm-auth\", \
\"aud\": \"followers\", \"exp\": 1767225600}`.";

const MIN_POSITION: &str = "Read-your-writes: answer only once the read model has applied this \
position (the `position` of a command reply); otherwise fail with `timeout` (504) after \
--max-wait-ms (5 s).";

fn server(scheme: &str, description: &str) -> Server {
    Server {
        url: format!("{scheme}://127.0.0.1:8080"),
        description: Some(description.into()),
        ..Server::default()
    }
}

fn tag(name: &str, description: &str) -> Tag {
    Tag {
        name: name.into(),
        description: Some(description.into()),
        ..Tag::default()
    }
}

/// An error response: its name under `components/responses`, what it means, and an example.
struct ErrorResponse {
    name: &'static str,
    description: &'static str,
    example: Option<(ErrorCode, &'static str)>,
}

const ERRORS: [ErrorResponse; 9] = [
    ErrorResponse {
        name: "BadRequest",
        description: "`malformed_request`: a bad JSON body, an unknown or missing parameter, a \
            bad id, action, kind or number.",
        example: Some((
            ErrorCode::MalformedRequest,
            "invalid `check_access` query: missing field `record`",
        )),
    },
    ErrorResponse {
        name: "Unauthorized",
        description: "`unauthenticated`: no bearer token, or one that is malformed, expired, \
            not yet valid, from another issuer or for another audience, or not signed by a \
            configured key. Carries `WWW-Authenticate: Bearer realm=\"followers\"` (with \
            `error=\"invalid_token\"` when a token was sent). Checked before anything else, so \
            it says nothing about the account.",
        example: Some((
            ErrorCode::Unauthenticated,
            "this route needs a bearer token: send `Authorization: Bearer <token>`",
        )),
    },
    ErrorResponse {
        name: "Forbidden",
        description: "`forbidden`: a valid bearer token that does not grant the account in the \
            path (its `accounts` claim names neither it nor `\"*\"`), whether or not that \
            account exists. Carries `WWW-Authenticate: Bearer realm=\"followers\", \
            error=\"insufficient_scope\"`.",
        example: Some((
            ErrorCode::Forbidden,
            "the bearer token does not grant reading account `globex`",
        )),
    },
    ErrorResponse {
        name: "NotFound",
        description: "`unknown_account` or `unknown_record`. (A path that is no route also \
            answers 404, with an empty body.)",
        example: Some((
            ErrorCode::UnknownAccount,
            "account `nowhere` does not exist",
        )),
    },
    ErrorResponse {
        name: "RequestTimeout",
        description: "`timeout`: the request body did not arrive within \
            --http-body-timeout-ms (10 s).",
        example: None,
    },
    ErrorResponse {
        name: "PayloadTooLarge",
        description: "`request_too_large`: the request body is (or is declared) larger than \
            --max-request-bytes (1 MiB by default); answered at once, without reading the body.",
        example: Some((
            ErrorCode::RequestTooLarge,
            "the request body has more than 1048576 bytes; at most 1048576 are accepted",
        )),
    },
    ErrorResponse {
        name: "InternalError",
        description: "Any other error code (not expected for queries).",
        example: None,
    },
    ErrorResponse {
        name: "ServiceUnavailable",
        description: "`unavailable`: nothing was done; retry shortly (the response carries \
            `Retry-After: 1`). Sent while the read models load the history at start-up or \
            rebuild from a replaced history (no query is answered from a partly loaded model; \
            `GET /ready` answers 200 again when done), and when the instance's query budget is \
            spent (queries in flight, queries waiting for a `min_position`, request bytes held).",
        example: Some((
            ErrorCode::Unavailable,
            "the read models are still loading the history; retry shortly (see /ready)",
        )),
    },
    ErrorResponse {
        name: "GatewayTimeout",
        description: "`timeout`: the read model did not reach `min_position` in time.",
        example: Some((
            ErrorCode::Timeout,
            "the read model did not reach position 100000 in time (it is at 42); retry, or ask \
             without min_position for the current answer",
        )),
    },
];

/// The error responses under `components/responses`: the failure envelope, with an example.
fn error_responses(ctx: &mut GenContext) -> Vec<(&'static str, Response)> {
    let schema = ctx.schema.subschema_for::<QueryReply<()>>();
    ERRORS
        .iter()
        .map(|e| {
            let example = e.example.and_then(|(code, message)| {
                serde_json::to_value(QueryReply::<()>::failure(ErrorBody::new(code, message))).ok()
            });
            let mut response = json_response(e.description, schema.clone(), example);
            if e.name == "Unauthorized" {
                response
                    .headers
                    .insert("WWW-Authenticate".into(), www_authenticate(ctx));
            }
            (e.name, response)
        })
        .collect()
}

fn www_authenticate(ctx: &mut GenContext) -> ReferenceOr<Header> {
    ReferenceOr::Item(Header {
        description: Some("The scheme, and why the token was refused.".into()),
        style: Default::default(),
        required: true,
        deprecated: None,
        format: ParameterSchemaOrContent::Schema(schema_object(
            ctx.schema.subschema_for::<String>(),
        )),
        example: Some(json!(r#"Bearer realm="followers", error="invalid_token""#)),
        examples: Default::default(),
        extensions: Default::default(),
    })
}

fn schema_object(json_schema: Schema) -> SchemaObject {
    SchemaObject {
        json_schema,
        external_docs: None,
        example: None,
    }
}

fn json_response(description: &str, schema: Schema, example: Option<Value>) -> Response {
    media_response(description, "application/json", schema, example)
}

fn media_response(
    description: &str,
    media: &str,
    schema: Schema,
    example: Option<Value>,
) -> Response {
    let content = MediaType {
        schema: Some(schema_object(schema)),
        example,
        ..MediaType::default()
    };
    Response {
        description: description.into(),
        content: [(media.to_owned(), content)].into_iter().collect(),
        ..Response::default()
    }
}

/// Documents a query route: its tag, summary, bearer security, the 200 reply of `A` with
/// `example`, and the error responses of `errors` (names of [`ERRORS`]).
pub fn query<'t, A: JsonSchema>(
    op: TransformOperation<'t>,
    id: &str,
    summary: &str,
    errors: &[u16],
    example: Value,
) -> TransformOperation<'t> {
    let mut op = op
        .id(id)
        .tag(QUERIES)
        .summary(summary)
        .security_requirement(BEARER);
    let reply = in_context(|ctx| ctx.schema.subschema_for::<QueryReply<A>>());
    let responses = op
        .inner_mut()
        .responses
        .get_or_insert_with(Default::default);
    responses.responses.insert(
        StatusCode::Code(200),
        ReferenceOr::Item(json_response("The answer.", reply, Some(example))),
    );
    add_errors(responses, errors);
    op
}

/// Documents a Server-Sent Events route: like [`query`], but its 200 answer is a
/// `text/event-stream` whose `change` events carry an `A` each (the schema given).
pub fn event_stream<'t, A: JsonSchema>(
    op: TransformOperation<'t>,
    id: &str,
    summary: &str,
    errors: &[u16],
    example: Value,
) -> TransformOperation<'t> {
    let mut op = op
        .id(id)
        .tag(QUERIES)
        .summary(summary)
        .security_requirement(BEARER);
    let event = in_context(|ctx| ctx.schema.subschema_for::<A>());
    let responses = op
        .inner_mut()
        .responses
        .get_or_insert_with(Default::default);
    let stream = media_response(
        "A stream of Server-Sent Events: `change` events (the schema and example are one \
         event's `data`; its `id` is the change's position), then one last `end` event whose \
         `data` has `code` (`slow_consumer`, `closing` or `unavailable`), `message` and \
         `resume_after`.",
        "text/event-stream",
        event,
        Some(example),
    );
    responses
        .responses
        .insert(StatusCode::Code(200), ReferenceOr::Item(stream));
    add_errors(responses, errors);
    op
}

/// The shared error responses of `errors` (names of [`ERRORS`]).
fn add_errors(responses: &mut aide::openapi::Responses, errors: &[u16]) {
    for status in errors {
        if let Some(name) = error_name(*status) {
            responses.responses.insert(
                StatusCode::Code(*status),
                ReferenceOr::ref_(&format!("#/components/responses/{name}")),
            );
        }
    }
}

/// The error response answered with `status`.
fn error_name(status: u16) -> Option<&'static str> {
    let name = match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        408 => "RequestTimeout",
        413 => "PayloadTooLarge",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => return None,
    };
    Some(name)
}

/// The errors of every `GET` query route that may not find what it is asked about.
pub const GET_ERRORS: &[u16] = &[400, 401, 403, 404, 500, 503, 504];
/// The errors of `check_access`, which answers an unknown record or account with a reason.
pub const CHECK_ERRORS: &[u16] = &[400, 401, 403, 500, 503, 504];
/// The errors of the route with a body.
pub const BODY_ERRORS: &[u16] = &[400, 401, 403, 408, 413, 500, 503, 504];

/// The path parameter `{account}` of every query route.
pub(crate) fn account_parameter(ctx: &mut GenContext) -> Parameter {
    let mut account = path_parameter("account", ctx.schema.subschema_for::<AccountId>());
    account.parameter_data_mut().example = Some(json!("acme"));
    account
}

fn path_parameter(name: &str, schema: Schema) -> Parameter {
    Parameter::Path {
        parameter_data: parameter_data(name, true, schema),
        style: PathStyle::Simple,
    }
}

fn query_parameter(name: &str, required: bool, schema: Schema) -> Parameter {
    Parameter::Query {
        parameter_data: parameter_data(name, required, schema),
        allow_reserved: false,
        style: QueryStyle::Form,
        allow_empty_value: None,
    }
}

fn parameter_data(name: &str, required: bool, schema: Schema) -> ParameterData {
    let description = match name {
        "min_position" => Some(MIN_POSITION.to_owned()),
        _ => schema
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    ParameterData {
        name: name.into(),
        description,
        required,
        deprecated: None,
        format: ParameterSchemaOrContent::Schema(schema_object(schema)),
        example: None,
        examples: Default::default(),
        explode: None,
        extensions: Default::default(),
    }
}

/// The parameters of query `T` on its route: `{account}`, then each field of `T` where
/// [`HttpQuery::SHAPE`] reads it from, in the order of `T`'s fields.
pub fn parameters<T: HttpQuery>(ctx: &mut GenContext) -> Vec<Parameter> {
    let shape = T::SHAPE;
    let mut request = T::json_schema(&mut ctx.schema);
    for transform in ctx.schema.transforms_mut() {
        transform.transform(&mut request);
    }
    let required = |field: &str| {
        request
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|f| f == field))
    };
    let mut out = vec![account_parameter(ctx)];
    let fields = request.get("properties").and_then(Value::as_object);
    for (field, schema) in fields.into_iter().flatten() {
        let schema = Schema::try_from(schema.clone()).unwrap_or_default();
        let required = required(field);
        if shape.path.contains(&field.as_str()) {
            out.push(path_parameter(field, schema));
        } else if shape.path_record == Some(field.as_str()) {
            let (kind, id) = record_parts(ctx, field, &schema);
            out.push(path_parameter("kind", kind));
            out.push(path_parameter("id", id));
        } else if let Some((_, kind_name, id_name)) =
            shape.param_record.filter(|(f, _, _)| *f == field.as_str())
        {
            let (kind, id) = record_parts(ctx, field, &schema);
            out.push(query_parameter(kind_name, required, kind));
            out.push(query_parameter(id_name, required, id));
        } else {
            out.push(query_parameter(field, required, schema));
        }
    }
    out
}

/// The schemas of the kind and id of the record `field` (described by `schema`), when they are
/// given apart: from [`RecordRef`]'s variants, each a `kind` constant and an `id`.
fn record_parts(ctx: &mut GenContext, field: &str, schema: &Schema) -> (Schema, Schema) {
    let about = schema
        .get("description")
        .and_then(Value::as_str)
        .map_or(String::new(), |d| format!(" {d}"));
    let record = RecordRef::json_schema(&mut ctx.schema);
    let variants = record.get("oneOf").and_then(Value::as_array);
    let mut kinds = Vec::new();
    let mut ids: Vec<Value> = Vec::new();
    for variant in variants.into_iter().flatten() {
        let properties = &variant["properties"];
        kinds.push(properties["kind"]["const"].clone());
        if !ids.contains(&properties["id"]) {
            ids.push(properties["id"].clone());
        }
    }
    let kind = json!({"type": "string", "enum": kinds,
        "description": format!("The kind of `{field}`.{about}")});
    let id = json!({"anyOf": ids, "description": format!("The id of `{field}`.{about}")});
    (
        Schema::try_from(kind).unwrap_or_default(),
        Schema::try_from(id).unwrap_or_default(),
    )
}

/// The request body of a `POST` query route: `T` as JSON.
pub fn request_body<T: JsonSchema>(ctx: &mut GenContext) -> RequestBody {
    let schema = ctx.schema.subschema_for::<T>();
    RequestBody {
        content: json_response("", schema, None).content,
        required: true,
        ..RequestBody::default()
    }
}

/// `/health`, `/ready`, `/metrics` and `/openapi.json`: routes that are not registered here
/// (the first three are the routes both services share, [`followers_runtime::http`], and the
/// last serves what this builds), documented beside the query routes.
pub fn operations<S: Clone + Send + Sync + 'static>(routes: ApiRouter<S>) -> ApiRouter<S> {
    let readiness = in_context(|ctx| ctx.schema.subschema_for::<Readiness>());
    let text = in_context(|ctx| ctx.schema.subschema_for::<String>());
    let object = Schema::try_from(json!({"type": "object"})).unwrap_or_default();
    let health = open("health", "Liveness: 200 while the process runs.").with(|op| {
        respond(
            op,
            200,
            media_response("Alive.", "text/plain", text.clone(), Some(json!("ok"))),
        )
    });
    let ready = open(
        "ready",
        "Readiness: 200 once the read models have caught up with the history at start-up.",
    )
    .with(|op| {
        let ready = json!({"position": 42, "ready": true});
        let loading = json!({"position": 0, "ready": false});
        let op = respond(
            op,
            200,
            json_response("Ready.", readiness.clone(), Some(ready)),
        );
        respond(
            op,
            503,
            json_response("Still loading the history.", readiness, Some(loading)),
        )
    });
    let metrics = open(
        "metrics",
        "Prometheus metrics (text exposition format 0.0.4).",
    )
    .with(|op| {
        let op = respond(
            op,
            200,
            media_response("The metrics.", "text/plain", text.clone(), None),
        );
        let elsewhere = "Metrics are not enabled in this process, or they are served on their \
                         own address (--metrics-addr) instead of this one.";
        respond(op, 404, media_response(elsewhere, "text/plain", text, None))
    });
    let openapi = open("openapi", "This document.").with(|op| {
        respond(
            op,
            200,
            json_response("The OpenAPI description.", object, None),
        )
    });
    routes
        .api_route_docs("/health", ApiMethodDocs::new("get", health.operation))
        .api_route_docs("/ready", ApiMethodDocs::new("get", ready.operation))
        .api_route_docs("/metrics", ApiMethodDocs::new("get", metrics.operation))
        .api_route_docs(
            "/openapi.json",
            ApiMethodDocs::new("get", openapi.operation),
        )
}

/// The body of `/ready`, as the shared route writes it.
#[derive(Debug, JsonSchema)]
#[allow(dead_code)]
struct Readiness {
    ready: bool,
    position: Position,
}

/// An operation documented apart from its handler.
struct Documented {
    operation: Operation,
}

impl Documented {
    fn with(mut self, f: impl FnOnce(TransformOperation<'_>) -> TransformOperation<'_>) -> Self {
        let _ = f(TransformOperation::new(&mut self.operation));
        self
    }
}

/// An operation of the `operations` tag, open without a token.
fn open(id: &str, summary: &str) -> Documented {
    Documented {
        operation: Operation::default(),
    }
    .with(|op| op.id(id).tag(OPERATIONS).summary(summary))
}

fn respond(
    mut op: TransformOperation<'_>,
    status: u16,
    response: Response,
) -> TransformOperation<'_> {
    op.inner_mut()
        .responses
        .get_or_insert_with(Default::default)
        .responses
        .insert(StatusCode::Code(status), ReferenceOr::Item(response));
    op
}
